"""Classification metrics shared by head_training, fine_tuning and evaluation (numpy only).

:func:`classification_report` gives the one report layout the project writes to JSON and MLflow:
``accuracy``, ``top3_accuracy`` (top-k with k = min(3, classes)), ``n``, ``macro_f1``,
``per_class`` {name: precision, recall, f1, support} and the ``confusion_matrix`` (rows: true,
columns: predicted). Draw the matrix with :func:`transfer_lab.reports.plots.confusion_matrix`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def top_k_accuracy(y_true: Sequence[int], probs: np.ndarray, k: int = 3) -> float:
    """Share of samples whose true class is among the ``k`` highest scores (ties: lower index first)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    k = max(1, min(int(k), p.shape[1]))
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predicted."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    out = {}
    for i, name in enumerate(class_names):
        precision = tp[i] / predicted[i] if predicted[i] else 0.0
        recall = tp[i] / actual[i] if actual[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[str(name)] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(actual[i]),
        }
    return out


def classification_report(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The project's metrics for class probabilities ``probs`` (N, C) against integer labels."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n_classes = len(class_names)
    if p.ndim != 2 or p.shape[1] != n_classes:
        raise ValueError(f"probs must have shape (N, {n_classes}) for {n_classes} class names, got {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be class indices 0..{n_classes - 1}")
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y, pred, n_classes)
    classes = per_class(cm, class_names)
    present = [c for c in classes.values() if c["support"] > 0]
    return {
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        # the mean of the per-class recalls (classes with photos): Oxford-IIIT Pet's standard metric,
        # which counts a few-shot breed as much as a common one
        "mean_per_class_accuracy": float(np.mean([c["recall"] for c in present])) if present else float("nan"),
        "top3_accuracy": top_k_accuracy(y, p, 3),
        "n": int(len(y)),
        "n_classes": n_classes,
        "macro_f1": float(np.mean([c["f1"] for c in present])) if present else float("nan"),
        "per_class": classes,
        "confusion_matrix": cm.tolist(),
    }
