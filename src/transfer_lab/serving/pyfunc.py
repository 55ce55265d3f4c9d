"""The served model: one MLflow pyfunc that wraps the decoder, the classifier and the unfamiliar
statistics, logged at the end of training and registered as ``transfer-lab-<data set>-<labels>``
(the version with the best test accuracy carries the alias ``champion``).

``mlflow models serve -m models:/transfer-lab-PetImages-species@champion --env-manager local``
answers ``POST /invocations`` with ``{"dataframe_records": [{"image": "<base64 of a JPEG/PNG
file>"}, ...]}`` by ``{"predictions": [{"label", "probability", "unfamiliar", "unfamiliar_score",
"top_k", "probabilities"}, ...]}``, one record per image. A record that is not base64, not an
image, a corrupt image or one over ``max_pixels`` gets HTTP 400 whose message names the record
and the problem in its first line; nothing is decoded past the size check, so it answers at once.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

try:  # mlflow is a dependency; keep the module importable for documentation tools
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
except ImportError:  # pragma: no cover
    mlflow = None
    MlflowException = ValueError  # type: ignore[misc,assignment]
    INVALID_PARAMETER_VALUE = 0

log = logging.getLogger(__name__)

ARTIFACT_NAME = "serving_model"
CHAMPION = "champion"
PIP_REQUIREMENTS = ["mlflow==3.17.2", "tensorflow-cpu==2.21.0", "keras==3.15.1", "pillow", "numpy", "pandas"]


class InvalidImage(MlflowException):
    """A request the model cannot answer (HTTP 400). mlflow's scoring server prepends "Failed to
    predict data '<the whole request>'" to an MlflowException's message, which would echo every
    base64 string back and push the reason out of the first line: this one keeps its own message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)
        self._own = str(message)

    @property
    def message(self) -> str:  # type: ignore[override]
        return getattr(self, "_own", None) or self.__dict__.get("_message", "")

    @message.setter
    def message(self, value: str) -> None:
        self.__dict__["_message"] = value  # the server's rewrite is kept aside, not shown


def _images(model_input: Any) -> list[Any]:
    """The ``image`` values of the request: a DataFrame (dataframe_records/split), a list of
    records or strings, or one dict."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input.columns:
            cols = ", ".join(map(str, model_input.columns)) or "none"
            raise InvalidImage(f"No `image` field in the request (fields: {cols}). Send "
                               '{"dataframe_records": [{"image": "<base64 of a JPEG/PNG file>"}]}.')
        return model_input["image"].tolist()
    if isinstance(model_input, Mapping):
        model_input = [model_input]
    if isinstance(model_input, (list, tuple)):
        return [r.get("image") if isinstance(r, Mapping) else r for r in model_input]
    raise InvalidImage(f"Cannot read a {type(model_input).__name__} request. Send "
                       '{"dataframe_records": [{"image": "<base64 of a JPEG/PNG file>"}]}.')


class TransferLabModel(mlflow.pyfunc.PythonModel if mlflow else object):  # type: ignore[misc]
    """Decoder + classifier + unfamiliar flag (transfer_lab.serving.predictor.Predictor)."""

    def load_context(self, context: Any) -> None:
        self._load(context.artifacts)

    def _load(self, artifacts: Mapping[str, str]) -> None:
        import keras

        from transfer_lab.data.imaging import resize_of
        from transfer_lab.serving.predictor import Predictor

        config = json.loads(Path(artifacts["config"]).read_text())
        classifier = keras.saving.load_model(artifacts["classifier"], compile=False)
        features = artifacts.get("features")
        feature_model = keras.saving.load_model(features, compile=False) if features else None
        with np.load(artifacts["unfamiliar"], allow_pickle=False) as data:
            stats = {k: data[k] for k in data.files}
        self.config = config
        self.predictor = Predictor(classifier, stats, config["class_names"], feature_model=feature_model,
                                   max_pixels=config.get("max_pixels"), top_k=config.get("top_k", 3),
                                   resize=resize_of(config))

    def predict(self, context, model_input, params=None):  # no type hints: mlflow would infer a schema from them
        import pandas as pd

        from transfer_lab.data.imaging import ImageRejected
        from transfer_lab.serving.predictor import b64_bytes

        values = _images(model_input)
        if not values:
            raise InvalidImage('No images in the request. Send {"dataframe_records": [{"image": "<base64>"}]}.')
        data = []
        for i, value in enumerate(values):
            try:
                data.append(b64_bytes(value))
            except ImageRejected as exc:
                raise InvalidImage(f"Record {i} (`image`): {exc.reason}: {exc.detail}. Send the base64 of an "
                                   "image file (JPEG, PNG, GIF, BMP, WebP, TIFF).") from None
        try:
            records = self.predictor.predict_bytes(data)
        except ImageRejected as exc:
            i = getattr(exc, "index", "?")
            fix = (f"Send an image of at most {self.predictor.max_pixels:,} pixels." if exc.reason == "too_large"
                   else "Send the base64 of a whole image file (JPEG, PNG, GIF, BMP, WebP, TIFF).")
            raise InvalidImage(f"Record {i} (`image`): {exc.reason}: {exc.detail}. {fix}") from None
        return pd.DataFrame(records)


# ------------------------------------------------------------------------------------------
# Logging and registering


def registered_name(experiment: str) -> str:
    """``transfer-lab-<data set>-<labels>`` from the MLflow experiment's name (hooks.experiment_name)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(experiment)).strip("-") or "photos"
    return clean if clean.startswith("transfer-lab") else f"transfer-lab-{clean}"


def log_model(classifier: Any, stats: Mapping[str, np.ndarray], config: Mapping[str, Any], *,
              feature_model: Any = None, registered_model_name: str | None = None,
              test_metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Log the serving model to the active run and, with ``registered_model_name``, register it
    with the test metrics as version tags; the alias ``champion`` then goes to the version with
    the best ``test_accuracy``. Returns what was logged (name, version, model URI, champion)."""
    with tempfile.TemporaryDirectory(prefix="transfer_lab_serving_") as tmp:
        tmp_path = Path(tmp)
        artifacts = {"classifier": str(tmp_path / "classifier.keras"), "unfamiliar": str(tmp_path / "unfamiliar.npz"),
                     "config": str(tmp_path / "config.json")}
        classifier.save(artifacts["classifier"])
        np.savez(artifacts["unfamiliar"], **{k: np.asarray(v) for k, v in stats.items()})
        Path(artifacts["config"]).write_text(json.dumps(dict(config), indent=2))
        if feature_model is not None:
            artifacts["features"] = str(tmp_path / "features.keras")
            feature_model.save(artifacts["features"])
        info = mlflow.pyfunc.log_model(name=ARTIFACT_NAME, python_model=TransferLabModel(), artifacts=artifacts,
                                       pip_requirements=PIP_REQUIREMENTS,
                                       registered_model_name=registered_model_name)
    out: dict[str, Any] = {"model_uri": info.model_uri, "registered_model_name": registered_model_name}
    if registered_model_name:
        version = str(info.registered_model_version)
        out["version"] = version
        out["champion"] = tag_and_crown(registered_model_name, version, test_metrics or {})
    return out


def tag_and_crown(name: str, version: str, test_metrics: Mapping[str, Any]) -> str:
    """Tag the version with its test metrics; give ``champion`` to the best test accuracy (the
    newest among equals). Returns the champion's version."""
    client = mlflow.MlflowClient()
    for key, value in test_metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            client.set_model_version_tag(name, version, f"test_{key}", str(float(value)))
    best, best_key = version, (-1.0, -1)
    for v in client.search_model_versions(f"name='{name}'"):
        try:
            acc = float(v.tags.get("test_accuracy", "nan"))
        except ValueError:
            continue
        key = (acc if np.isfinite(acc) else -1.0, int(v.version))
        if key > best_key:
            best, best_key = str(v.version), key
    client.set_registered_model_alias(name, CHAMPION, best)
    log.info("Registered %s version %s; @%s is version %s (test accuracy %.4f).", name, version, CHAMPION, best,
             best_key[0])
    return best
