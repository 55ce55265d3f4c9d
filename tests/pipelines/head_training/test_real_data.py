"""Real photos (a slice of ../shared PetImages, 96 px, the shared MobileNetV2 weights):
data_ingestion -> feature_extraction -> head_training, then evaluation on photos it never saw."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest


@pytest.mark.slow
def test_cats_vs_dogs_slice_end_to_end(tmp_path, shared_dir, mobilenet_v2_no_top, kedro_project):
    train_src, new_src = tmp_path / "PetImages", tmp_path / "new" / "PetImages"
    for species in ("Cat", "Dog"):
        files = sorted((shared_dir / "data" / "PetImages" / species).glob("*.jpg"))
        for dest, chunk in ((train_src, files[:40]), (new_src, files[-15:])):
            (dest / species).mkdir(parents=True)
            for p in chunk:
                shutil.copy(p, dest / species / p.name)
    params = {"data.source": str(train_src), "data.labels": "species", "backbone.weights": str(mobilenet_v2_no_top),
              "backbone.image_size": 96, "head_training.epochs": 300, "head_training.patience": 20}
    kedro_project.run(["data_ingestion", "feature_extraction", "head_training"], params)
    metrics = json.loads(kedro_project.out("data/08_reporting/head_metrics.json").read_text())
    assert metrics["n_test"] == 12 and metrics["accuracy"] >= 0.75  # chance is 0.5

    # head_training alone: evaluation uses its classifier (the default, finetuned, is not there yet)
    assert not kedro_project.out("data/06_models/finetuned_classifier.keras").exists()
    kedro_project.run("evaluation", {**params, "evaluation.source": str(new_src.parent), "evaluation.model": "head"})
    report = json.loads(kedro_project.out("data/08_reporting/evaluation.json").read_text())
    assert report["layout"] == "pet_images" and report["n"] == 30
    assert report["accuracy"] >= 0.85, report["accuracy"]
    assert set(report["per_class"]) == {"cat", "dog"}
    preds = pd.read_csv(kedro_project.out("data/08_reporting/predictions.csv"))
    assert len(preds) == 30 and preds["correct"].mean() == pytest.approx(report["accuracy"])
