"""Kedro datasets of this project. Every one writes atomically and, where it makes sense, also
logs what it wrote to the active MLflow run, so nodes stay plain functions of data.

Use them in ``conf/base/catalog_*.yml`` as ``transfer_lab.io.datasets.<Name>``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from transfer_lab.io import tracking
from transfer_lab.io.files import atomic_dir, atomic_path, write_json


def _missing(path: Path, what: str, hint: str | None) -> DatasetError:
    msg = f"{what} not found: {path}."
    if hint:
        msg += f" {hint}"
    return DatasetError(msg)


def _chief_only(save: Any) -> Any:
    """Wrap a dataset's ``save``: under multi-worker training (``TF_CONFIG``) only the chief writes;
    other workers skip the write (see transfer_lab.runtime.cluster.is_chief)."""

    def save_if_chief(self: Any, data: Any) -> None:
        from transfer_lab.runtime.cluster import is_chief

        if not is_chief():
            return None
        return save(self, data)

    save_if_chief.__name__, save_if_chief.__qualname__ = save.__name__, save.__qualname__
    save_if_chief.__doc__ = save.__doc__
    save_if_chief.__chief_only__ = True  # type: ignore[attr-defined]
    # Let Kedro unwrap to the original in subclasses (as it does with its own wrapper).
    save_if_chief.__savewrapped__ = True  # type: ignore[attr-defined]
    save_if_chief.__wrapped__ = save.__wrapped__ if getattr(save, "__savewrapped__", False) else save  # type: ignore[attr-defined]
    return save_if_chief


class _FileDataset(AbstractDataset):
    """Common parts: a local ``filepath``, an optional MLflow artifact folder, a hint for when the
    file is missing (which pipeline writes it)."""

    def __init__(
        self,
        filepath: str,
        mlflow_artifact_path: str | None = "",
        missing_hint: str | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self._filepath = Path(filepath)
        # "" = log at the artifact root; None = do not log
        self._artifact_path = mlflow_artifact_path
        self._hint = missing_hint
        self.metadata = metadata

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)  # Kedro wraps ``save`` first
        save = cls.__dict__.get("save")
        if save is not None and not getattr(save, "__chief_only__", False):
            cls.save = _chief_only(save)  # type: ignore[method-assign]

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "mlflow_artifact_path": self._artifact_path}

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _log(self, path: Path | None = None) -> None:
        if self._artifact_path is not None:
            tracking.log_artifact(path or self._filepath, self._artifact_path or None)

    def _check(self, what: str) -> None:
        if not self._filepath.exists():
            raise _missing(self._filepath, what, self._hint)


class MetricsDataset(_FileDataset):
    """A JSON report (nested dict). Saving also logs its numeric leaves as MLflow metrics
    (``metric_prefix`` + dotted key) and the file as an artifact."""

    def __init__(self, filepath: str, metric_prefix: str = "", **kwargs: Any):
        super().__init__(filepath, **kwargs)
        self._prefix = metric_prefix

    def load(self) -> dict[str, Any]:
        self._check("Report")
        return json.loads(self._filepath.read_text())

    def save(self, data: dict[str, Any]) -> None:
        write_json(self._filepath, data)
        tracking.log_metrics(data, prefix=self._prefix)
        self._log()


class TableDataset(_FileDataset):
    """A pandas DataFrame as CSV (not logged to MLflow unless ``mlflow_artifact_path`` is set)."""

    def __init__(self, filepath: str, mlflow_artifact_path: str | None = None, **kwargs: Any):
        super().__init__(filepath, mlflow_artifact_path=mlflow_artifact_path, **kwargs)

    def load(self) -> Any:
        import pandas as pd

        self._check("Table")
        return pd.read_csv(self._filepath, keep_default_na=False, na_values=[""])

    def save(self, data: Any) -> None:
        with atomic_path(self._filepath) as tmp:
            data.to_csv(tmp, index=False)
        self._log()


class JSONDataset(_FileDataset):
    """Any JSON-able value (class names, small configs), not logged unless asked."""

    def __init__(self, filepath: str, mlflow_artifact_path: str | None = None, **kwargs: Any):
        super().__init__(filepath, mlflow_artifact_path=mlflow_artifact_path, **kwargs)

    def load(self) -> Any:
        self._check("File")
        return json.loads(self._filepath.read_text())

    def save(self, data: Any) -> None:
        write_json(self._filepath, data)
        self._log()


class FigureDataset(_FileDataset):
    """One PNG: a matplotlib Figure, a PIL image or an (H, W, 3) 0-255 array."""

    def load(self) -> np.ndarray:
        from transfer_lab.data.imaging import load_rgb

        self._check("Image")
        return load_rgb(self._filepath)

    def save(self, data: Any) -> None:
        with atomic_path(self._filepath) as tmp:
            _write_png(data, tmp)
        self._log()


class ImageFolderDataset(_FileDataset):
    """A folder of PNGs from a dict ``{name: figure | image | array}``; saving replaces the folder
    whole. Loading gives ``{name: array}``."""

    def load(self) -> dict[str, np.ndarray]:
        from transfer_lab.data.imaging import load_rgb  # the project's one decoder

        self._check("Image folder")
        return {p.stem: load_rgb(p) for p in sorted(self._filepath.glob("*.png"))}

    def save(self, data: dict[str, Any]) -> None:
        with atomic_dir(self._filepath) as tmp:
            for name, item in data.items():
                _write_png(item, tmp / f"{_safe_name(name)}.png")
        self._log()


class ReportDataset(_FileDataset):
    """A report folder: ``{"report.md": markdown, "<name>.png": figure | image | array, ...}``, the
    Markdown beside the figures it embeds (linked by file name), so the report is whole wherever it is
    copied. Saving replaces the folder whole; loading gives ``{file name: text | array}``."""

    def load(self) -> dict[str, Any]:
        from transfer_lab.data.imaging import load_rgb

        self._check("Report folder")
        return {p.name: (load_rgb(p) if p.suffix == ".png" else p.read_text())
                for p in sorted(self._filepath.iterdir()) if p.is_file() and not p.name.startswith(".")}

    def save(self, data: dict[str, Any]) -> None:
        with atomic_dir(self._filepath) as tmp:
            for name, item in data.items():
                if _safe_name(name) != name:
                    raise DatasetError(f"Report file name {name!r}: use letters, digits, '-', '_' and '.' only.")
                if name.endswith(".png"):
                    _write_png(item, tmp / name)
                else:
                    (tmp / name).write_text(str(item))
        self._log()


class NpzDataset(_FileDataset):
    """A dict of numpy arrays in one ``.npz`` file (not logged to MLflow by default).

    ``missing_ok: true`` makes a missing or unreadable file load as ``{}`` (a cache that may not
    exist yet, e.g. ``features_cache`` in catalog_feature_extraction.yml)."""

    def __init__(
        self, filepath: str, mlflow_artifact_path: str | None = None, missing_ok: bool = False, **kwargs: Any
    ):
        super().__init__(filepath, mlflow_artifact_path=mlflow_artifact_path, **kwargs)
        self._missing_ok = missing_ok

    def load(self) -> dict[str, np.ndarray]:
        if self._missing_ok:
            try:
                with np.load(self._filepath, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
            except Exception:  # missing, truncated or not an npz: nothing cached
                return {}
        self._check("Array file")
        with np.load(self._filepath, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        with atomic_path(self._filepath, suffix=".tmp.npz") as tmp:
            np.savez(tmp, **{k: np.asarray(v) for k, v in data.items()})
        self._log()


class KerasModelDataset(_FileDataset):
    """A Keras 3 model in one ``.keras`` file. Saving can also log it to MLflow with the
    ``mlflow.keras`` flavor, a signature and an input example (one image of the model's input
    size, 0-255 RGB)."""

    def __init__(self, filepath: str, mlflow_model_name: str | None = None, **kwargs: Any):
        kwargs.setdefault("mlflow_artifact_path", None)
        super().__init__(filepath, **kwargs)
        self._model_name = mlflow_model_name

    def load(self) -> Any:
        import keras

        self._check("Model")
        return keras.saving.load_model(self._filepath, compile=False)

    def save(self, model: Any) -> None:
        with atomic_path(self._filepath, suffix=".tmp.keras") as tmp:
            model.save(tmp)
        self._log()
        if self._model_name and tracking.active():
            log_keras_model(model, self._model_name)


def log_keras_model(model: Any, name: str) -> None:
    """Log ``model`` with the ``mlflow.keras`` flavor, a signature and a 0-255 input example."""
    import mlflow
    from mlflow.models import infer_signature

    shape = [d if d is not None else 1 for d in model.input_shape]
    shape[0] = 1
    rng = np.random.default_rng(0)
    example = rng.integers(0, 256, size=shape).astype("float32")
    signature = infer_signature(example, np.asarray(model(example)))
    # mlflow 3.17's keras flavor writes the input example before it creates the model folder
    # (FileNotFoundError .../model/input_example.json): create the folder first.
    import os
    from unittest import mock

    import mlflow.keras.save as keras_save

    original = keras_save._save_example

    def _save_example(mlflow_model, input_example, path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        return original(mlflow_model, input_example, path, *args, **kwargs)

    with mock.patch.object(keras_save, "_save_example", _save_example):
        mlflow.keras.log_model(model, name=name, signature=signature, input_example=example,
                               pip_requirements=keras_requirements())


def keras_requirements() -> list[str]:
    """The pip requirements of a logged Keras model: keras, its backend's package and numpy, at the
    versions installed. Given to MLflow, which otherwise infers them by loading the model in a new
    Python process (about 12 s a model on 2 cores, twice per default run)."""
    from importlib import metadata

    import keras

    backend = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",),
               "torch": ("torch",)}.get(keras.backend.backend(), ())
    out = []
    for names in (("keras",), backend, ("numpy",)):
        for dist in names:
            try:
                out.append(f"{dist}=={metadata.version(dist)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return out


class Deferred:
    """A catalog entry not loaded yet: ``exists()`` says whether its file is there, calling it
    loads it (with the entry's "run this pipeline first" message when it is missing)."""

    def __init__(self, dataset: AbstractDataset):
        self._dataset = dataset

    def exists(self) -> bool:
        return bool(self._dataset.exists())

    def __call__(self) -> Any:
        return self._dataset.load()

    def __repr__(self) -> str:
        return f"Deferred({self._dataset!r})"


class LazyDataset(AbstractDataset):
    """Wraps any dataset (``dataset:`` as in the catalog) and loads as a :class:`Deferred`, so a
    node can take a file it only sometimes needs (the head classifier when ``model`` says
    ``finetuned``); it is read, or fails with its hint, only when the node calls it. Used as a
    transcoded view (``name@lazy``) of an artefact that another entry (``name@keras``) writes."""

    def __init__(self, dataset: dict[str, Any], metadata: dict[str, Any] | None = None, writable: bool = False):
        from kedro.io.core import parse_dataset_definition

        cls, kwargs = parse_dataset_definition(dict(dataset))
        self._inner = cls(**kwargs)
        self.metadata = metadata
        self._writable = bool(writable)

    def load(self) -> Deferred:
        return Deferred(self._inner)

    def save(self, data: Any) -> None:
        """With ``writable: true`` (an artefact no node writes, e.g. the hook's run timings, read
        lazily under its one name), saves through the wrapped dataset; read-only otherwise."""
        if self._writable:
            self._inner.save(data)
            return
        raise DatasetError("LazyDataset is read-only: save through the wrapped dataset's own catalog entry.")

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._inner._describe()}

    def _exists(self) -> bool:
        return self._inner.exists()


def _safe_name(name: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in str(name)) or "image"


#: zlib level of every PNG written (lossless at any level): 1 encodes about 4x faster than PIL's
#: default 6 for files about 1.3x larger (the default run writes hundreds of figures and images).
PNG_LEVEL = 1


def _write_png(data: Any, path: Path) -> None:
    from PIL import Image

    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover
        Figure = ()  # type: ignore[assignment]
    if isinstance(data, Figure):
        data.savefig(path, format="png", dpi=data.dpi, bbox_inches="tight", pil_kwargs={"compress_level": PNG_LEVEL})
        if "matplotlib.pyplot" in sys.modules:  # a pyplot figure: free it (a plain Figure needs nothing)
            sys.modules["matplotlib.pyplot"].close(data)
    elif isinstance(data, Image.Image):
        data.save(path, format="PNG", compress_level=PNG_LEVEL)
    elif isinstance(data, (str, Path)) and Path(data).is_file():
        shutil.copyfile(data, path)
    else:
        arr = np.asarray(data)
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr.astype(np.float64)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(path, format="PNG", compress_level=PNG_LEVEL)
