"""`kedro run` of head_training, then serving and inference on generated photos: the serving model
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


def test_serving_step_registers_a_model_that_answers_like_the_inference_pipeline(kedro_project, make_image, tmp_path):
    import mlflow

    src = tmp_path / "photos"
    for cls in ("cat", "dog"):
        for i in range(6):
            make_image(src / cls / f"{i}.png", size=(40, 40), fmt="PNG", seed=i + (100 if cls == "dog" else 0))
    kedro_project.run(["data_ingestion", "feature_extraction", "head_training", "serving"],
                      {"data.source": str(src), **TINY})
    import json

    info = json.loads(kedro_project.out("data/06_models/serving_model.json").read_text())
    assert info["logged"] and info["registered_model_name"] == "transfer-lab-photos-breed"
    assert kedro_project.out("data/06_models/unfamiliar.npz").exists()

    new = tmp_path / "new"
    for i in range(3):
        make_image(new / f"{i}.jpg", size=(50, 40), seed=500 + i)
    kedro_project.run("inference", {"inference.source": str(new), **TINY})
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
