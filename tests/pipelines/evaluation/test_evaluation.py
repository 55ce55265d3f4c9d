"""evaluation: parameters, the chosen model, how folder labels meet the model's classes,
unlabelled folders, the pipeline with SequentialRunner over an in-memory catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pydantic import ValidationError

from tests.pipelines.adversarial.test_pipeline import deferred
from transfer_lab.models.choice import ModelChoiceError
from transfer_lab.params.evaluation import EvaluationParams
from transfer_lab.pipelines.evaluation.nodes import EvaluationError, _label_mapping, report, scan_source

BREEDS = ["Bengal", "Siamese", "beagle", "pug"]
SPECIES_OF = {"Bengal": "cat", "Siamese": "cat", "beagle": "dog", "pug": "dog"}
MODEL = {"class_names": BREEDS, "class_species": SPECIES_OF}


def test_parameters(tmp_path):
    import yaml

    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "conf/base/parameters_evaluation.yml").read_text())["evaluation"]
    assert EvaluationParams.model_validate(raw) == EvaluationParams()
    assert EvaluationParams().model == "finetuned" and EvaluationParams().source is None
    with pytest.raises(ValidationError, match=r"evaluation.source=.*nope: no such folder"):
        EvaluationParams(source=str(tmp_path / "nope"))
    with pytest.raises(ValidationError, match=r"evaluation.layout=zip is not valid: .*oxford_pets"):
        EvaluationParams(layout="zip")
    with pytest.raises(ValidationError, match=r"evaluation.model=imagenet is not valid: .*'finetuned' or 'head'"):
        EvaluationParams(model="imagenet")
    with pytest.raises(ValidationError, match=r"evaluation.batch_size=0 is not valid"):
        EvaluationParams(batch_size=0)
    with pytest.raises(ValidationError, match=r"evaluation.n_worts is not a parameter. Did you mean evaluation.n_worst"):
        EvaluationParams(n_worts=3)
    assert EvaluationParams(source=str(tmp_path), batch_size="8").batch_size == 8


def test_scan_source_checks_the_model_and_the_folder_first(tmp_path, make_image):
    for i, name in enumerate(["Bengal_1.jpg", "pug_2.jpg"]):
        make_image(tmp_path / "photos" / name, seed=i)
    head = deferred("a model")
    missing = deferred(missing=tmp_path / "finetuned_classifier.keras")
    with pytest.raises(ModelChoiceError, match=r"evaluation.model=finetuned: .*--pipelines=fine_tuning` first, or use "
                                               r"the one that exists: --params evaluation.model=head"):
        scan_source(EvaluationParams(source=str(tmp_path)), MODEL, missing, head)
    with pytest.raises(EvaluationError, match="evaluation.source is not set"):
        scan_source(EvaluationParams(model="head"), MODEL, missing, head)
    params = EvaluationParams(model="head", source=str(tmp_path / "photos"))
    images, info = scan_source(params, MODEL, missing, head)
    assert info["labels"] == "breed" and info["layout"] == "oxford_pets" and sorted(images["label"]) == ["Bengal", "pug"]
    _, info = scan_source(params, {"class_names": ["cat", "dog"]}, missing, head)
    assert info["labels"] == "species"


def test_pipeline_scores_a_tiny_model(tmp_path, make_image):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from tests.pipelines.adversarial.test_attacks import tiny_conv_model
    from transfer_lab.pipelines.evaluation import create_pipeline

    for i in range(3):
        for species in ("Cat", "Dog"):
            make_image(tmp_path / "PetImages" / species / f"{i}.jpg", seed=i)
    model = tiny_conv_model()
    data = {"params:evaluation": EvaluationParams(model="head", source=str(tmp_path / "PetImages"), n_worst=2),
            "classifier_config": {"class_names": ["cat", "dog"]},
            "head_classifier@lazy": deferred(model),
            "finetuned_classifier@lazy": deferred(missing=tmp_path / "finetuned_classifier.keras"),
            "unfamiliar_stats@lazy": deferred(missing=tmp_path / "unfamiliar.npz")}  # serving not run: n_unfamiliar null
    catalog = DataCatalog({k: MemoryDataset(v, copy_mode="assign") for k, v in data.items()})
    for k in ("evaluation_report", "predictions", "evaluation_mistakes"):
        catalog[k] = MemoryDataset(copy_mode="assign")
    SequentialRunner().run(create_pipeline(), catalog)
    out, preds = catalog["evaluation_report"].load(), catalog["predictions"].load()
    assert out["n"] == 6 and out["layout"] == "pet_images" and out["labels"] == "species" and out["model"] == "head"
    # the accuracy is what the model says about these photos
    from transfer_lab.data.imaging import load_rgb

    x = np.stack([load_rgb(p, 32) for p in preds["path"]]).astype(np.float32)
    truth = [0 if "/Cat/" in p else 1 for p in preds["path"]]
    assert out["accuracy"] == pytest.approx(float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == truth)))


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
    scan = {"source": "/x", "layout": "pet_images", "labels": "species"}
    cfg = EvaluationParams(n_worst=4)
    out, preds, _ = report(probs, scored(["cat", "dog", "dog"]), scan, MODEL, cfg)
    assert out["n"] == 3 and out["accuracy"] == pytest.approx(2 / 3) and "species" in out["scored_as"]
    assert list(preds["predicted_species"]) == ["cat", "dog", "cat"]
    out, preds, _ = report(probs, scored(["Bengal", "pug", "beagle"]), {**scan, "layout": "oxford_pets", "labels": "breed"},
                           MODEL, cfg)
    assert out["accuracy"] == pytest.approx(2 / 3) and out["top3_accuracy"] == 1.0
    assert list(preds["top1_class"]) == ["Bengal", "pug", "Siamese"]
    # a species model scored on a breed-labelled folder: by species
    sp_probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    out, _, _ = report(sp_probs, scored(["Bengal", "pug"], ["cat", "dog"]), scan,
                       {"class_names": ["cat", "dog"]}, cfg)
    assert out["accuracy"] == 1.0 and out["n"] == 2


def test_unlabelled_folder_gets_predictions_only(scored):
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6]], np.float32)
    out, preds, gallery = report(probs, scored(["", ""]), {"source": "/x", "layout": "unlabelled", "labels": "breed"},
                                 MODEL, EvaluationParams(n_worst=4))
    assert out["n"] == 0 and out["accuracy"] is None and out["n_unlabelled"] == 2
    assert list(preds["top1_class"]) == ["Bengal", "pug"] and preds["top1_prob"].iloc[0] == pytest.approx(0.7)
    assert gallery is not None
