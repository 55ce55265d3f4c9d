"""Who this process is in a multi-worker cluster (``TF_CONFIG``), and who writes.

Only the chief writes: :func:`is_chief` reads ``TF_CONFIG`` (the ``chief`` task, or worker 0 when
the cluster has no chief). The project's datasets and :mod:`transfer_lab.io.tracking` skip writes
on other workers, and the project hook keeps kedro-mlflow from opening a run there.

Nothing here imports TensorFlow: it is safe to call before TensorFlow initialises.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping


class DistributeError(ValueError):
    """The cluster set-up (``TF_CONFIG``) or the strategy cannot be used; the message says what to
    change. (The ``runtime.*`` parameters themselves are checked by
    :class:`transfer_lab.params.runtime.RuntimeParams`.)"""


# --------------------------------------------------------------------------------------------
# TF_CONFIG: who is the chief
# --------------------------------------------------------------------------------------------


def tf_config() -> dict[str, Any]:
    """``TF_CONFIG`` as a dict ({} when unset); fails clearly on bad JSON."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DistributeError(
            f"TF_CONFIG is not valid JSON ({exc}). Set it to e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None
    if not isinstance(cfg, dict):
        raise DistributeError("TF_CONFIG must be a JSON object with 'cluster' and 'task'.")
    return cfg


def cluster_size(cfg: Mapping[str, Any] | None = None) -> int:
    """Number of training tasks (chief + workers) in ``TF_CONFIG``; 1 without a cluster."""
    cfg = tf_config() if cfg is None else cfg
    cluster = cfg.get("cluster") or {}
    return max(1, len(cluster.get("chief") or []) + len(cluster.get("worker") or []))


def task(cfg: Mapping[str, Any] | None = None) -> tuple[str, int]:
    cfg = tf_config() if cfg is None else cfg
    t = cfg.get("task") or {}
    return str(t.get("type", "worker")), int(t.get("index", 0) or 0)


def is_chief(cfg: Mapping[str, Any] | None = None) -> bool:
    """True unless ``TF_CONFIG`` makes this process a non-chief task of a cluster: the ``chief``
    task is the chief; without one, worker 0 is."""
    cfg = tf_config() if cfg is None else cfg
    cluster = cfg.get("cluster") or {}
    if not cluster or not cfg.get("task"):
        return True
    kind, index = task(cfg)
    if cluster.get("chief"):
        return kind == "chief"
    return kind == "worker" and index == 0


def worker_path(path: str | Path, rt: Any = None) -> Path:
    """``path`` on the chief (or without a runtime ``rt``); a private temporary folder on other workers (files they must write,
    e.g. Keras's backup state, without clobbering the chief's)."""
    if rt is None or rt.chief:
        return Path(path)
    return Path(tempfile.gettempdir()) / f"transfer_lab_worker_{rt.task_type}{rt.task_index}_{os.getpid()}" / Path(path).name
