"""evaluation: parameters, how folder labels meet the model's classes, unlabelled folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transfer_lab.pipelines.evaluation.nodes import EvaluationError, _label_mapping, report, validate_parameters

BREEDS = ["Bengal", "Siamese", "beagle", "pug"]
SPECIES_OF = {"Bengal": "cat", "Siamese": "cat", "beagle": "dog", "pug": "dog"}
MODEL = {"class_names": BREEDS, "class_species": SPECIES_OF}


def test_parameters(tmp_path):
    with pytest.raises(EvaluationError, match="evaluation.source is not set"):
        validate_parameters({"source": None}, MODEL)
    with pytest.raises(EvaluationError, match="evaluation.source=.*no such folder"):
        validate_parameters({"source": str(tmp_path / "nope")}, MODEL)
    with pytest.raises(EvaluationError, match="evaluation.layout"):
        validate_parameters({"source": str(tmp_path), "layout": "zip"}, MODEL)
    assert validate_parameters({"source": str(tmp_path)}, MODEL)["labels"] == "breed"
    assert validate_parameters({"source": str(tmp_path)}, {"class_names": ["cat", "dog"]})["labels"] == "species"


def test_label_mapping():
    mode, targets, mapping, matrix = _label_mapping(["pug", "Bengal"], BREEDS, SPECIES_OF)
    assert mode == "classes" and mapping == {"Bengal": 0, "pug": 3} and matrix is None
    # species labels on a breed model: breed probabilities summed per species
    mode, targets, mapping, matrix = _label_mapping(["cat", "dog"], BREEDS, SPECIES_OF)
    assert mode == "species" and targets == ["cat", "dog"]
    np.testing.assert_allclose(np.array([[0.1, 0.2, 0.3, 0.4]]) @ matrix, [[0.3, 0.7]])
    with pytest.raises(EvaluationError, match="no known species"):
        _label_mapping(["cat"], BREEDS, {})
    with pytest.raises(EvaluationError, match="None of the folder's labels"):
        _label_mapping(["zebra", "okapi"], BREEDS, SPECIES_OF)


@pytest.fixture
def scored(tmp_path, make_image):
    def make(labels, species=None):
        n = len(labels)
        paths = [str(make_image(tmp_path / f"{i}.jpg", seed=i)) for i in range(n)]
        return _frame(paths, labels, species)

    return make


def _frame(paths, labels, species=None):
    n = len(labels)
    return pd.DataFrame({"path": paths, "label": labels,
                         "species": species or [""] * n, "error": [""] * n})


def test_report_scores_species_and_breeds(scored):
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6], [0.1, 0.5, 0.3, 0.1]], np.float32)
    scan = {"layout": "pet_images"}
    cfg = {"source": "/x", "labels": "species", "n_worst": 4}
    out, preds, _ = report(probs, scored(["cat", "dog", "dog"]), scan, MODEL, cfg)
    assert out["n"] == 3 and out["accuracy"] == pytest.approx(2 / 3) and "species" in out["scored_as"]
    assert list(preds["predicted_species"]) == ["cat", "dog", "cat"]
    out, preds, _ = report(probs, scored(["Bengal", "pug", "beagle"]), {"layout": "oxford_pets"},
                           MODEL, {**cfg, "labels": "breed"})
    assert out["accuracy"] == pytest.approx(2 / 3) and out["top3_accuracy"] == 1.0
    assert list(preds["top1_class"]) == ["Bengal", "pug", "Siamese"]
    # a species model scored on a breed-labelled folder: by species
    sp_probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    out, _, _ = report(sp_probs, scored(["Bengal", "pug"], ["cat", "dog"]), scan,
                       {"class_names": ["cat", "dog"]}, cfg)
    assert out["accuracy"] == 1.0 and out["n"] == 2


def test_unlabelled_folder_gets_predictions_only(scored):
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6]], np.float32)
    out, preds, gallery = report(probs, scored(["", ""]), {"layout": "unlabelled"}, MODEL,
                                 {"source": "/x", "labels": "breed", "n_worst": 4})
    assert out["n"] == 0 and out["accuracy"] is None and out["n_unlabelled"] == 2
    assert list(preds["top1_class"]) == ["Bengal", "pug"] and preds["top1_prob"].iloc[0] == pytest.approx(0.7)
    assert gallery is not None
