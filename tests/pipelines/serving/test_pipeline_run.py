"""`kedro run` of head_training, serving and inference (on cached features and generated photos): the serving model
is logged and registered (champion), and the logged model answers what predictions.csv says."""

from __future__ import annotations

import base64
import os

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

TINY = {"backbone.name": "mobilenet_v2", "backbone.weights": "none", "backbone.image_size": 32, "backbone.alpha": 0.35,
        "head_training.epochs": 3, "head_training.batch_size": 8}


def _features(root, photos, n_features: int = 1280) -> None:
    """data/04_feature/features.npz as feature_extraction writes it, with class-coloured features
    (skips ingestion and extraction: this test is about what comes after head_training)."""
    rng = np.random.default_rng(0)
    out = {"class_names": np.array(["cat", "dog"]), "class_species": np.array(["cat", "dog"])}
    for split, n in (("train", 16), ("val", 6), ("test", 6)):
        y = np.arange(n) % 2
        centre = np.where(y[:, None] == 0, 1.0, -1.0) * np.linspace(0, 1, n_features)[None]
        out[f"{split}_features"] = (np.abs(centre + rng.normal(0, 0.3, (n, n_features)))).astype(np.float32)
        out[f"{split}_labels"] = y
        out[f"{split}_paths"] = np.array([str(photos[i % len(photos)]) for i in range(n)])
    np.savez(root / "data/04_feature/features.npz", **out)


def test_serving_step_registers_a_model_that_answers_like_the_inference_pipeline(kedro_project, make_image, tmp_path):
    import json

    import mlflow

    new = tmp_path / "new"
    photos = [make_image(new / f"{i}.jpg", size=(50, 40), seed=500 + i) for i in range(3)]
    _features(kedro_project.path, photos)
    kedro_project.run(["head_training", "serving", "inference"],
                      {"inference.source": str(new), "inference.model": "head", **TINY})
    info = json.loads(kedro_project.out("data/06_models/serving_model.json").read_text())
    assert info["logged"] and info["registered_model_name"].startswith("transfer-lab-")
    assert info["champion"] == info["version"] and kedro_project.out("data/06_models/unfamiliar.npz").exists()
    table = pd.read_csv(kedro_project.out("data/07_model_output/predictions.csv"))
    assert len(table) == 3 and set(table["label"]) <= {"cat", "dog"}

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    try:
        model = mlflow.pyfunc.load_model(f"models:/{info['registered_model_name']}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    records = [{"image": base64.b64encode(open(p, "rb").read()).decode()} for p in table["source"]]
    out = model.predict(pd.DataFrame(records))
    assert out["label"].tolist() == table["label"].tolist()
    np.testing.assert_allclose(out["probabilities"].map(lambda p: p["cat"]).to_numpy(float), table["p_cat"], atol=1e-5)
    assert out["unfamiliar"].tolist() == table["unfamiliar"].tolist()
