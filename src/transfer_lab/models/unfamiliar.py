"""The "unfamiliar photo" flag: is this photo unlike every training photo (neither a cat nor a dog
for a cats-vs-dogs model)?

Fitted on the training photos' cached backbone features only (data/04_feature/features.npz,
the pooled features the head was trained on); its threshold is set on the validation photos so
that at most ``max_flagged`` (5%) of them are flagged. Every statistic is a numpy array, so the
whole detector is one ``.npz`` (catalog entry ``unfamiliar_stats``) and scores need the pooled
features only (no model).

Scores (higher = more unfamiliar), measured against each other by bench/unfamiliar.py:

- ``knn``: cosine distance from the photo's L2-normalised features to its k-th nearest training
  features (Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors").
- ``mahalanobis``: the smallest Mahalanobis distance to a class mean, one covariance shared by
  the classes, shrunk towards its diagonal (Lee et al. 2018).
- ``msp``: 1 - the largest softmax probability of the head (Hendrycks & Gimpel 2017).
- ``energy``: minus the log-sum-exp of the head's logits (Liu et al. 2020).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

METHODS = ("knn", "mahalanobis", "msp", "energy")


class UnfamiliarError(ValueError):
    """The statistics cannot be fitted or used; the message says what to run or change."""


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _logits(stats: Mapping[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    return np.asarray(features, np.float64) @ stats["head_kernel"].astype(np.float64) + stats["head_bias"]


def head_weights(head: Any) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of the head's ``logits`` layer (models.backbones.build_head)."""
    kernel, bias = head.get_layer("logits").get_weights()
    return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)


def scores(stats: Mapping[str, np.ndarray], features: np.ndarray, method: str | None = None,
           chunk: int = 1024) -> np.ndarray:
    """Unfamiliarity of each row of ``features`` (pooled backbone features), higher = stranger."""
    method = str(method or np.asarray(stats["method"]).reshape(-1)[0])
    x = np.asarray(features, np.float32)
    if x.ndim != 2 or x.shape[1] != int(stats["n_features"]):
        raise UnfamiliarError(
            f"unfamiliar statistics were fitted on {int(stats['n_features'])} features per photo but got shape "
            f"{x.shape}: they come from another backbone. Re-run `kedro run --pipelines=feature_extraction,head_training`.")
    if len(x) == 0:
        return np.zeros(0, np.float64)
    if method == "knn":
        bank = stats["train_bank"].astype(np.float32)
        k = int(stats["k"])
        q = _l2n(x)
        out = np.empty(len(q), np.float64)
        for s in range(0, len(q), chunk):
            sim = q[s:s + chunk] @ bank.T
            kth = np.partition(-sim, k - 1, axis=1)[:, k - 1]  # -(k-th largest similarity)
            out[s:s + chunk] = 1.0 + kth
        return out
    if method == "mahalanobis":
        d = x.astype(np.float64)[:, None, :] - stats["class_means"][None, :, :].astype(np.float64)
        prec = stats["precision"].astype(np.float64)
        m = np.einsum("nkd,de,nke->nk", d, prec, d, optimize=True)
        return np.sqrt(np.maximum(m.min(axis=1), 0.0))
    if method in ("msp", "energy"):
        z = _logits(stats, x)
        zmax = z.max(axis=1, keepdims=True)
        lse = (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
        if method == "energy":
            return -lse
        return 1.0 - np.exp(zmax[:, 0] - lse)
    raise UnfamiliarError(f"unfamiliar.method={method}: use one of {', '.join(METHODS)}.")


def fit(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray, *,
        method: str = "knn", k: int = 1, max_flagged: float = 0.05, shrinkage: float = 0.1,
        head: tuple[np.ndarray, np.ndarray] | None = None, max_bank: int | None = 20000,
        seed: int = 0) -> dict[str, np.ndarray]:
    """The statistics of ``method`` on the training features, and the threshold: the
    ``1 - max_flagged`` quantile of the validation photos' scores (so at most that share of
    familiar validation photos is flagged). ``head`` = (kernel, bias) of the head's logits layer,
    needed by msp and energy."""
    if method not in METHODS:
        raise UnfamiliarError(f"unfamiliar.method={method}: use one of {', '.join(METHODS)}.")
    x = np.asarray(train_features, np.float32)
    y = np.asarray(train_labels, np.int64)
    if x.ndim != 2 or len(x) < 2:
        raise UnfamiliarError("unfamiliar statistics need at least 2 training photos' features. Run "
                              "`kedro run --pipelines=data_ingestion,feature_extraction` on more photos.")
    v = np.asarray(val_features, np.float32)
    if len(v) == 0:
        raise UnfamiliarError("unfamiliar statistics need validation photos to set their threshold: set "
                              "data.split.val above 0 and re-run data_ingestion and feature_extraction.")
    if not 0.0 < max_flagged < 1.0:
        raise UnfamiliarError(f"unfamiliar.max_flagged={max_flagged}: give a share between 0 and 1, e.g. 0.05.")
    stats: dict[str, np.ndarray] = {"method": np.array(method), "n_features": np.array(x.shape[1]),
                                    "max_flagged": np.array(float(max_flagged)), "n_train": np.array(len(x))}
    if method == "knn":
        bank = _l2n(x)
        if max_bank and len(bank) > max_bank:
            bank = bank[np.random.default_rng(seed).choice(len(bank), max_bank, replace=False)]
        stats["train_bank"] = bank.astype(np.float16 if len(bank) * x.shape[1] > 5e7 else np.float32)
        stats["k"] = np.array(int(max(1, min(k, len(bank)))))
    elif method == "mahalanobis":
        classes = np.unique(y)
        means = np.stack([x[y == c].mean(axis=0) for c in classes]).astype(np.float64)
        centred = x.astype(np.float64) - means[np.searchsorted(classes, y)]
        cov = centred.T @ centred / max(len(x) - len(classes), 1)
        cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-6 * np.eye(len(cov))
        stats["class_means"] = means.astype(np.float32)
        stats["precision"] = np.linalg.pinv(cov).astype(np.float32)
    else:
        if head is None:
            raise UnfamiliarError(f"unfamiliar.method={method} needs the head's logits layer (head=(kernel, bias)).")
        stats["head_kernel"] = np.asarray(head[0], np.float32)
        stats["head_bias"] = np.asarray(head[1], np.float32)
    val_scores = scores(stats, v, method)
    stats["threshold"] = np.array(float(np.quantile(val_scores, 1.0 - max_flagged, method="higher")))
    stats["val_flagged"] = np.array(float((val_scores > stats["threshold"]).mean()))
    return stats


def flag(stats: Mapping[str, np.ndarray], features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unfamiliar: bool per photo, score per photo) with the fitted threshold."""
    s = scores(stats, features)
    return s > float(stats["threshold"]), s


def summary(stats: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What was fitted, for reports and MLflow."""
    return {"method": str(np.asarray(stats["method"]).reshape(-1)[0]), "threshold": float(stats["threshold"]),
            "val_flagged": float(stats["val_flagged"]), "max_flagged": float(stats["max_flagged"]),
            "n_train": int(stats["n_train"])}
