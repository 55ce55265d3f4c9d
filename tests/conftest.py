"""Shared test fixtures.

- Environment: telemetry off, MLflow on a throw-away SQLite store, TensorFlow quiet.
- ``shared_dir``: the read-only ../shared folder beside the checkout (photos, ImageNet weights).
- ``kedro_project``: a throw-away copy of this project's conf/ in tmp_path, with a ``run(pipelines,
  params)`` method that runs pipelines in-process through a real KedroSession (so hooks, catalog
  and kedro-mlflow all take part) and writes nothing into the checkout.
- ``make_image``: writes generated test images in any format.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message=".*register_new_resolver.*")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared not found at {SHARED} (set TRANSFER_LAB_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def mobilenet_v2_no_top(shared_dir: Path) -> Path:
    return shared_dir / "weights" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"


@pytest.fixture(scope="session")
def _mlflow_session_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    if "MLFLOW_TRACKING_URI_FOR_TESTS" in os.environ:
        return os.environ["MLFLOW_TRACKING_URI_FOR_TESTS"]
    # One store for the whole session: creating an MLflow SQLite schema takes seconds.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _mlflow_tmp_store(_mlflow_session_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests log to a throw-away SQLite store, never to the checkout's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _mlflow_session_store)


class KedroProject:
    """A copy of the project's configuration in a temporary folder, runnable in-process."""

    def __init__(self, path: Path):
        self.path = path
        shutil.copytree(ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("credentials*"))
        (path / "conf" / "local").mkdir(exist_ok=True)
        shutil.copy(ROOT / "pyproject.toml", path / "pyproject.toml")
        (path / "src").mkdir()  # bootstrap_project wants a source folder; the package itself is installed
        for sub in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input",
                    "06_models", "07_model_output", "08_reporting"):
            (path / "data" / sub).mkdir(parents=True, exist_ok=True)

    def run(self, pipelines: str | list[str] | None = None, params: dict[str, Any] | None = None) -> dict:
        """Run pipelines (``None``: the default one) with ``--params``-style overrides.

        ``params`` uses dotted keys like the CLI: ``{"data.source": "...", "data.labels": "species"}``.
        """
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        old = Path.cwd()
        os.chdir(self.path)
        try:
            bootstrap_project(self.path)
            runtime = _nest(params or {})
            names = [pipelines] if isinstance(pipelines, str) else pipelines
            with KedroSession.create(project_path=self.path, runtime_params=runtime) as session:
                return session.run(pipeline_names=names)
        finally:
            os.chdir(old)
            try:
                import mlflow

                while mlflow.active_run() is not None:
                    mlflow.end_run()
            except Exception:
                pass

    def out(self, relpath: str) -> Path:
        return self.path / relpath


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        cur = nested
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
    return nested


@pytest.fixture
def kedro_project(tmp_path: Path) -> KedroProject:
    return KedroProject(tmp_path / "project")


def _write_image(path: Path, size=(64, 48), fmt: str = "JPEG", mode: str = "RGB", seed: int = 0, color=None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    if color is not None:
        arr = np.zeros((h, w, 3), np.uint8) + np.asarray(color, np.uint8)
    else:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


@pytest.fixture
def make_image():
    """``make_image(path, size=(w, h), fmt="JPEG", mode="RGB", seed=0, color=None)``."""
    return _write_image
