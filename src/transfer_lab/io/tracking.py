"""MLflow helpers shared by every pipeline.

kedro-mlflow opens one MLflow run per ``kedro run`` and logs the parameters. These helpers add
metrics, figures and files to that run, and do nothing when no run is active (unit tests, or a
pipeline listed under ``disable_tracking`` in ``conf/base/mlflow.yml``).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Mapping


def active() -> bool:
    """A run is open and this process may write to it (under multi-worker training only the chief
    logs: see transfer_lab.runtime.cluster.is_chief)."""
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return False
    from transfer_lab.runtime.cluster import is_chief

    return mlflow.active_run() is not None and is_chief()


def flatten(data: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, float]:
    """Numeric leaves of a nested mapping as ``{"a.b.c": value}``; lists are indexed."""
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, numbers.Number):
            if math.isfinite(float(value)):
                out[key] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}{sep}{k}" if key else str(k))
        elif isinstance(value, (list, tuple)) and all(isinstance(v, numbers.Number) for v in value):
            for i, v in enumerate(value):
                walk(v, f"{key}{sep}{i}")

    walk(data, prefix)
    return {_clean_key(k): v for k, v in out.items()}


def _clean_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space : / only.
    return "".join(c if (c.isalnum() or c in "_-. :/") else "_" for c in key)


def log_metrics(metrics: Mapping[str, Any], prefix: str = "", step: int | None = None) -> None:
    if not active():
        return
    import mlflow

    flat = flatten(metrics, prefix)
    if flat:
        mlflow.log_metrics(flat, step=step)


def log_history(history: Mapping[str, list[float]], prefix: str = "") -> None:
    """Per-epoch curves (a Keras ``History.history``) as MLflow metric histories."""
    if not active():
        return
    import mlflow

    for name, values in history.items():
        for step, value in enumerate(values):
            if value is not None and math.isfinite(float(value)):
                mlflow.log_metric(_clean_key(f"{prefix}{name}"), float(value), step=step)


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    if not active():
        return
    import mlflow

    flat: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        else:
            flat[_clean_key(key)] = str(value)[:500]

    walk(params, prefix)
    client_params = {k: v for k, v in flat.items()}
    # Params cannot be re-logged with another value in the same run; keep the first.
    run = mlflow.active_run()
    existing = set(mlflow.get_run(run.info.run_id).data.params)
    new = {k: v for k, v in client_params.items() if k not in existing}
    if new:
        mlflow.log_params(new)


def set_tags(tags: Mapping[str, Any]) -> None:
    if not active():
        return
    import mlflow

    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file or a whole folder to the active run."""
    if not active():
        return
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path or path.name)
    elif path.exists():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
