"""Keras models logged to MLflow name their pip requirements themselves: MLflow does not start a
second Python process to infer them (about 12 s a model on 2 cores)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest


def test_requirements_are_keras_its_backend_and_numpy_at_the_installed_versions():
    import keras

    from transfer_lab.io.datasets import keras_requirements

    req = dict(r.split("==") for r in keras_requirements())
    assert req["keras"] == metadata.version("keras") and req["numpy"] == metadata.version("numpy")
    backend = {"tensorflow": {"tensorflow", "tensorflow-cpu"}, "jax": {"jax"}, "torch": {"torch"}}[keras.backend.backend()]
    assert backend & set(req), req


def test_a_logged_model_carries_them_and_nothing_is_inferred(tmp_path, monkeypatch):
    import keras
    import mlflow
    import mlflow.utils.requirements_utils as requirements_utils

    from transfer_lab.io.datasets import keras_requirements, log_keras_model

    def refuse(*args, **kwargs):
        raise AssertionError("MLflow inferred the requirements in a subprocess")

    monkeypatch.setattr(requirements_utils, "_infer_requirements", refuse)
    monkeypatch.setattr(requirements_utils, "_capture_imported_modules", refuse)
    from mlflow.tracking._tracking_service import utils as tracking_utils

    before = tracking_utils._tracking_uri  # None unless a test set one: restored as it was
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        inp = keras.Input((8, 8, 3))
        model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp)))
        # its own experiment in its own store (another test may have left a different one active)
        experiment = mlflow.create_experiment("logged-models")
        with mlflow.start_run(experiment_id=experiment):
            log_keras_model(model, "tiny")
            model_id = mlflow.last_logged_model().model_id
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path / "dl")))
        lines = [ln.strip() for ln in (local / "requirements.txt").read_text().splitlines()
                 if ln.strip() and not ln.startswith("#")]
        assert set(keras_requirements()) <= set(lines), lines
        loaded = mlflow.keras.load_model(f"models:/{model_id}")
        x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
        np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
    finally:
        mlflow.set_tracking_uri(before)
