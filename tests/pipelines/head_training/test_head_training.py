"""head_training: its parameter model, a seeded head on separable features, the classifier it
assembles, the pipeline with SequentialRunner over an in-memory catalog, and (slow) the pipeline
+ evaluation through a KedroSession on a tiny random-weight backbone."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from pydantic import ValidationError

from transfer_lab.models.backbones import build_feature_extractor
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.head_training import HeadTrainingParams
from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.pipelines.head_training import create_pipeline
from transfer_lab.pipelines.head_training.nodes import (
    HeadTrainingError,
    assemble_classifier,
    evaluate_head,
    train_head,
)

BACKBONE_PARAMS = {"name": "mobilenet_v2", "weights": "none", "image_size": 32, "alpha": 0.35}
BACKBONE = BackboneParams.model_validate(BACKBONE_PARAMS)
CLASSES = ["ant", "bee", "cow", "dog"]
ONE_DEVICE = RuntimeParams(strategy="none")
CONF = Path(__file__).resolve().parents[3] / "conf" / "base"


def blobs(n_per_class=(12, 4, 4), dim=1280, seed=0, flip=True):
    """Separable Gaussian blobs, one per class, as features.npz would hold them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(CLASSES), dim)).astype(np.float32)
    out = {"class_names": np.asarray(CLASSES), "class_species": np.asarray(["", "", "", "dog"])}
    for split, n in zip(("train", "val", "test"), n_per_class):
        y = np.repeat(np.arange(len(CLASSES)), n).astype(np.int32)
        out[f"{split}_features"] = (centres[y] + rng.normal(0, 1.5, (len(y), dim))).astype(np.float32)
        out[f"{split}_labels"] = y
        if flip and split != "test":
            out[f"{split}_features_flip"] = (centres[y] + rng.normal(0, 1.5, (len(y), dim))).astype(np.float32)
    return out


def test_defaults_are_the_yaml_defaults():
    conf = yaml.safe_load((CONF / "parameters_head_training.yml").read_text())["head_training"]
    assert HeadTrainingParams.model_validate(conf) == HeadTrainingParams()
    assert HeadTrainingParams().model_dump() == conf


@pytest.mark.parametrize("bad, key, says", [
    ({"dropout": 1.0}, "dropout", "less than 1"),
    ({"learning_rate": 0}, "learning_rate", "greater than 0"),
    ({"epochs": 2.5}, "epochs", "fractional part"),
    ({"class_weight": "yes"}, "class_weight", "true or false"),
    ({"batch_size": "big"}, "batch_size", "valid integer"),
    ({"seed": True}, "seed", "not true or false"),
])
def test_a_wrong_value_is_refused_naming_the_key(bad, key, says):
    with pytest.raises(ValidationError, match=f"head_training.{key}=.* is not valid: .*{says}.*--params"):
        HeadTrainingParams(**bad)


def test_an_unknown_key_is_refused_with_did_you_mean():
    with pytest.raises(ValidationError, match="head_training.dropuot is not a parameter. Did you mean "
                                              "head_training.dropout?"):
        HeadTrainingParams.model_validate({"dropuot": 0.1})


def test_command_line_values_are_taken_and_null_is_the_default():
    p = HeadTrainingParams.model_validate({"epochs": "30", "learning_rate": "1e-3", "refit_on_val": "false",
                                           "dropout": None})
    assert (p.epochs, p.learning_rate, p.refit_on_val, p.dropout) == (30, 1e-3, False, 0.0)


def test_head_learns_is_seeded_and_refits():
    feats = blobs()
    params = HeadTrainingParams(epochs=8, patience=3)
    head, history = train_head(feats, params, ONE_DEVICE)
    metrics, cm_fig, curves = evaluate_head(head, feats, history)
    assert metrics["accuracy"] >= 0.9 and metrics["top3_accuracy"] == 1.0 and metrics["n_test"] == 16
    assert set(metrics["per_class"]) == set(CLASSES)
    assert np.asarray(metrics["confusion_matrix"]).sum() == 16
    assert "val_loss" in history and 1 <= len(history["loss"]) <= 8
    head2, history2 = train_head(feats, params, ONE_DEVICE)
    assert history2 == history
    for a, b in zip(head.get_weights(), head2.get_weights()):
        np.testing.assert_array_equal(a, b)
    # without the refit, a different head (trained on train only)
    head3, _ = train_head(feats, HeadTrainingParams(epochs=8, patience=3, refit_on_val=False), ONE_DEVICE)
    assert not np.array_equal(head3.get_weights()[0], head.get_weights()[0])


def test_one_class_is_refused():
    feats = blobs()
    feats["class_names"] = np.asarray(["ant"])
    with pytest.raises(HeadTrainingError, match="two or more"):
        train_head(feats, HeadTrainingParams(epochs=1), ONE_DEVICE)


def test_classifier_is_backbone_plus_head():
    cfg = BACKBONE
    feats = blobs(dim=1280)
    head, _ = train_head(feats, HeadTrainingParams(epochs=2, refit_on_val=False), ONE_DEVICE)
    classifier, names, config = assemble_classifier(head, BACKBONE, feats)
    assert names == CLASSES and config["image_size"] == 32 and config["class_species"]["dog"] == "dog"
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    extractor = build_feature_extractor(cfg, backbone=classifier.get_layer("backbone"))
    expected = head.predict(extractor.predict(images, verbose=0), verbose=0)
    np.testing.assert_allclose(classifier.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-5)
    assert classifier.get_layer("logits") is not None
    feats["backbone"] = np.asarray([json.dumps({**BACKBONE_PARAMS, "image_size": 64, "weights_id": "none"})])
    with pytest.raises(HeadTrainingError, match="same backbone"):
        assemble_classifier(head, BACKBONE, feats)


def _with_paths(feats):
    for split in ("train", "val", "test"):
        feats[f"{split}_paths"] = np.asarray([f"/p/{split}/{i}.jpg" for i in range(len(feats[f"{split}_labels"]))])
    return feats


def test_exclude_label_issues_leaves_the_flagged_photos_out(caplog):
    from transfer_lab.pipelines.head_training.nodes import flagged_mask

    feats = _with_paths(blobs())
    wrong = [0, 13, 30]  # train photos given another class's label
    for i in wrong:
        feats["train_labels"][i] = (feats["train_labels"][i] + 1) % len(CLASSES)
    issues = pd.DataFrame({"path": [f"/p/train/{i}.jpg" for i in wrong] + ["/p/val/2.jpg", "/p/train/5.jpg"],
                           "split": ["train"] * 3 + ["val", "train"],
                           "given": [CLASSES[feats["train_labels"][i]] for i in wrong] + ["ant", "cow"],
                           "suggested": "bee", "score": 0.9})
    flagged = dict(zip(issues.path, issues.given))
    keep = flagged_mask(feats, "train", flagged)
    assert np.nonzero(~keep)[0].tolist() == wrong  # train/5 is an ant now: an older labelling's row is ignored
    assert np.nonzero(~flagged_mask(feats, "val", flagged))[0].tolist() == [2]
    caplog.set_level("INFO")
    head, _ = train_head(feats, HeadTrainingParams(epochs=4, patience=2, exclude_label_issues=True), ONE_DEVICE,
                         issues)
    assert "3 train and 1 val photo(s) the audit flagged are left out" in caplog.text
    caplog.clear()
    train_head(feats, HeadTrainingParams(epochs=2, exclude_label_issues=False), ONE_DEVICE, issues)
    assert "left out" not in caplog.text


def test_exclude_label_issues_without_the_audit_warns_and_trains_on_everything(tmp_path, caplog):
    from transfer_lab.io.datasets import Deferred, TableDataset

    missing = Deferred(TableDataset(filepath=str(tmp_path / "label_issues.csv")))
    on = HeadTrainingParams(epochs=2, exclude_label_issues=True)
    head, history = train_head(_with_paths(blobs()), on, ONE_DEVICE, missing)
    assert "kedro run --pipelines=audit" in caplog.text and len(history["loss"]) >= 1
    with pytest.raises(HeadTrainingError, match="kedro run --pipelines=audit"):
        train_head(blobs(), on, ONE_DEVICE, pd.DataFrame({"file": ["x"]}))


def test_pipeline_on_an_in_memory_catalog(tmp_path):
    """The pipeline as Kedro runs it (SequentialRunner), on in-memory data: features in; head,
    history, metrics, figures, classifier, class names and classifier config out."""
    from transfer_lab.io.datasets import Deferred, TableDataset

    feats = blobs()
    outputs = ["head", "head_history", "head_metrics", "head_confusion_matrix", "head_training_curves",
               "head_classifier@keras", "class_names@json", "classifier_config"]
    catalog = DataCatalog({
        "features": MemoryDataset(feats),
        "params:head_training": MemoryDataset(HeadTrainingParams(epochs=6, patience=3)),
        "params:runtime": MemoryDataset(ONE_DEVICE),
        "params:backbone": MemoryDataset(BACKBONE),
        "label_issues@lazy": MemoryDataset(Deferred(TableDataset(filepath=str(tmp_path / "none.csv"))),
                                           copy_mode="assign"),
        **{name: MemoryDataset(copy_mode="assign") for name in outputs},
    })
    SequentialRunner().run(create_pipeline(), catalog)
    metrics = catalog.load("head_metrics")
    assert metrics["accuracy"] >= 0.9 and metrics["n_test"] == 16 and metrics["epochs_run"] <= 6
    assert catalog.load("class_names@json") == CLASSES
    config = catalog.load("classifier_config")
    assert config["image_size"] == 32 and config["backbone"]["name"] == "mobilenet_v2"
    classifier = catalog.load("head_classifier@keras")
    assert isinstance(classifier, keras.Model) and classifier.input_shape[1:] == (32, 32, 3)
    assert int(classifier.output_shape[-1]) == len(CLASSES)
    probs = np.asarray(classifier(np.zeros((2, 32, 32, 3), np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # (head and head_history are intermediate: the runner releases them once evaluate_head used them)


@pytest.mark.slow
def test_head_training_then_evaluation_pipelines(tmp_path, make_image, kedro_project):
    from ..feature_extraction.tiny import make_photos

    np.savez(kedro_project.out("data/04_feature/features.npz"), **blobs())
    params = {f"backbone.{k}": v for k, v in BACKBONE_PARAMS.items()}
    kedro_project.run("head_training", {**params, "head_training.epochs": 6})
    metrics = json.loads(kedro_project.out("data/08_reporting/head_metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["n_test"] == 16 and "top3_accuracy" in metrics
    assert not kedro_project.out("data/06_models/finetuned_classifier.keras").exists()
    for f in ("06_models/head_classifier.keras", "06_models/head.keras", "08_reporting/head_confusion_matrix.png",
              "08_reporting/head_training_curves.png"):
        assert kedro_project.out(f"data/{f}").stat().st_size > 1000, f
    assert json.loads(kedro_project.out("data/06_models/class_names.json").read_text()) == CLASSES
    config = json.loads(kedro_project.out("data/06_models/classifier_config.json").read_text())
    assert config["image_size"] == 32 and config["backbone"]["name"] == "mobilenet_v2"

    # evaluation on a folder with one class the model knows, one it does not, and an unlabelled photo
    src = tmp_path / "new"
    make_photos(src, make_image, classes=("ant", "cow"), n=3)
    (src / "cow").rename(src / "zebra")
    make_image(src / "loose.jpg")
    (src / "ant" / "broken.jpg").write_bytes(b"not an image")
    kedro_project.run("evaluation", {"evaluation.source": str(src), "evaluation.layout": "folders",
                                     "evaluation.model": "head"})
    report = json.loads(kedro_project.out("data/08_reporting/evaluation.json").read_text())
    assert report["n"] == 3 and report["n_unknown_label"] == 3 and report["unknown_labels"] == {"zebra": 3}
    assert report["n_rejected"] == 1 and report["n_unlabelled"] == 1
    assert report["per_class"]["ant"]["support"] == 3 and 0 <= report["accuracy"] <= 1
    preds = pd.read_csv(kedro_project.out("data/08_reporting/predictions.csv"), keep_default_na=False)
    assert len(preds) == 8 and {"top1_class", "top1_prob", "top3_class", "top3_prob"} <= set(preds.columns)
    ok = preds[preds.error == ""]
    assert set(ok.top1_class) <= set(CLASSES) and np.all(ok.top1_prob >= ok.top2_prob)
    assert kedro_project.out("data/08_reporting/evaluation_mistakes.png").stat().st_size > 500
