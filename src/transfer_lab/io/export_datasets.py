"""Catalog datasets for exported models: a file of bytes (a .tflite flatbuffer) and a TensorFlow
SavedModel folder (written with Keras 3's ``model.export``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transfer_lab.io.datasets import _FileDataset
from transfer_lab.io.files import atomic_path


class BytesDataset(_FileDataset):
    """Raw bytes in one file, logged to MLflow under ``mlflow_artifact_path`` when given."""

    def __init__(self, filepath: str, mlflow_artifact_path: str | None = None, **kwargs: Any):
        super().__init__(filepath, mlflow_artifact_path=mlflow_artifact_path, **kwargs)

    def load(self) -> bytes:
        self._check("File")
        return self._filepath.read_bytes()

    def save(self, data: bytes) -> None:
        with atomic_path(self._filepath) as tmp:
            Path(tmp).write_bytes(bytes(data))
        self._log()


class SavedModelDataset(_FileDataset):
    """A TensorFlow SavedModel folder: ``save(model)`` exports a Keras model (its ``serve``
    endpoint: 0-255 RGB in, probabilities out), ``save(path)`` moves an exported folder into
    place; ``load`` gives ``tf.saved_model.load``'s object."""

    def __init__(self, filepath: str, mlflow_artifact_path: str | None = None, **kwargs: Any):
        super().__init__(filepath, mlflow_artifact_path=mlflow_artifact_path, **kwargs)

    def load(self) -> Any:
        import tensorflow as tf

        self._check("SavedModel folder")
        return tf.saved_model.load(str(self._filepath))

    def save(self, data: Any) -> None:
        tmp = self._filepath.with_name(self._filepath.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if hasattr(data, "export"):
            data.export(str(tmp), format="tf_saved_model", verbose=False)
        else:  # a folder already exported (moved into place)
            shutil.move(str(data), tmp)
        shutil.rmtree(self._filepath, ignore_errors=True)
        tmp.rename(self._filepath)
        self._log()
