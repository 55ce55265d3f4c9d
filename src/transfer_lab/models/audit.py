"""The data audit in feature space (the cached pooled features of feature_extraction):

- near-duplicates across splits: cosine similarity of pooled features (what the hash missed);
- likely label errors: out-of-fold probabilities of a multinomial logistic regression (k-fold on
  the features), confident learning (Northcutt et al. 2021): per-class threshold = the mean
  probability the class gets on its own photos; a photo is flagged when its given label is under
  its threshold while another class is over its own; ranked by margin (best other class minus
  given label);
- outliers far from every class: cosine distance to each class mean over that class's own
  training photos' distances (a quantile): over 1 for every class = an outlier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class AuditError(ValueError):
    """The features do not fit the audit; the message says what to re-run."""


@dataclass(frozen=True)
class FeatureSet:
    features: np.ndarray      # (n, d) float32
    labels: np.ndarray        # (n,) int
    paths: np.ndarray         # (n,) str
    splits: np.ndarray        # (n,) str
    class_names: list[str]


def feature_set(features: dict[str, np.ndarray]) -> FeatureSet:
    """All splits of the ``features`` artefact (data/04_feature/features.npz) in one table."""
    need = [f"{s}_{k}" for s in SPLITS for k in ("features", "labels", "paths")] + ["class_names"]
    missing = [k for k in need if k not in features]
    if missing:
        raise AuditError(
            f"features lacks {', '.join(missing)}: it was written by an older feature_extraction. Re-run "
            "`kedro run --pipelines=feature_extraction`."
        )
    parts = [(s, features[f"{s}_features"], features[f"{s}_labels"], features[f"{s}_paths"]) for s in SPLITS]
    return FeatureSet(
        features=np.concatenate([p[1] for p in parts]).astype(np.float32),
        labels=np.concatenate([p[2] for p in parts]).astype(np.int64),
        paths=np.concatenate([np.asarray(p[3], dtype=str) for p in parts]),
        splits=np.concatenate([np.full(len(p[1]), p[0]) for p in parts]),
        class_names=[str(c) for c in np.asarray(features["class_names"]).tolist()],
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cross_split_pairs(fs: FeatureSet, threshold: float, chunk: int = 1024) -> pd.DataFrame:
    """Pairs of photos in different splits whose pooled features have cosine similarity >=
    ``threshold``: ``path, match, similarity`` (one row per pair)."""
    x = _unit(fs.features)
    rows = []
    for start in range(0, len(x), chunk):
        sim = x[start:start + chunk] @ x.T
        r, c = np.nonzero(sim >= threshold)
        for i, j in zip(r + start, c):
            if i < j and fs.splits[i] != fs.splits[j]:
                rows.append((fs.paths[i], fs.paths[j], float(sim[i - start, j])))
    return pd.DataFrame(rows, columns=["path", "match", "similarity"])


def out_of_fold_probabilities(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int = 5, c: float = 1.0, max_iter: int = 300,
    seed: int = 0, components: int | None = None,
) -> np.ndarray:
    """(n, n_classes) probabilities of each photo from a model that never saw it (stratified
    k-fold multinomial logistic regression on standardised features, first projected on their
    ``components`` principal axes when given: unsupervised, so no label leaks across folds)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, np.float64)
    if components and components < min(x.shape):
        x = PCA(n_components=components, random_state=seed).fit_transform(StandardScaler().fit_transform(x))

    counts = np.bincount(y, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        raise AuditError(
            "audit.label_issues needs at least 2 photos in every class for its k-fold; a class has 1. "
            "Add photos or drop the class."
        )
    probs = np.zeros((len(y), n_classes), np.float64)
    for train, held in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[train])
        model = LogisticRegression(C=c, max_iter=max_iter)
        model.fit(scaler.transform(x[train]), y[train])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(scaler.transform(x[held]))
    return probs


def neighbour_probabilities(x: np.ndarray, y: np.ndarray, n_classes: int, k: int = 10,
                            chunk: int = 1024) -> np.ndarray:
    """(n, n_classes) leave-one-out k-nearest-neighbour votes (cosine similarity of the features):
    the share of each photo's ``k`` most similar other photos in each class."""
    xu = _unit(np.asarray(x, np.float32))
    k = int(max(1, min(k, len(y) - 1)))
    out = np.zeros((len(y), n_classes), np.float64)
    for start in range(0, len(y), chunk):
        sim = xu[start:start + chunk] @ xu.T
        sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf  # not itself
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        votes = y[idx]
        for j in range(n_classes):
            out[start:start + len(sim), j] = (votes == j).mean(axis=1)
    return out


def confident_learning(probs: np.ndarray, y: np.ndarray, rule: str = "confident") -> tuple[pd.DataFrame, np.ndarray]:
    """Per photo: ``flagged``, ``suggested`` (class index), ``score`` (margin: the best other
    class's probability minus the given label's; higher = more likely wrong) and
    ``self_confidence``; and the per-class thresholds (mean self-confidence of each class).

    ``rule="confident"`` (confident learning): flagged when the given label is under its class's
    threshold while another class is over its own. ``rule="predicted"`` (cleanlab's
    ``predicted_neq_given``): flagged when another class is more likely than the given label and
    the given label is under its threshold (more photos flagged; the margin ranks them)."""
    n, k = probs.shape
    thresholds = np.asarray([probs[y == j, j].mean() if (y == j).any() else 1.0 for j in range(k)])
    given = probs[np.arange(n), y]
    if rule == "predicted":
        above = probs > given[:, None]
    elif rule == "confident":
        above = probs >= thresholds[None, :]
    else:
        raise AuditError(f"audit.label_issues.rule={rule} is not valid: use confident or predicted.")
    above[np.arange(n), y] = False
    other = np.where(above, probs, -np.inf)
    suggested = other.argmax(axis=1)
    flagged = (given < thresholds[y]) & above.any(axis=1)
    best_other = np.where(np.isfinite(other.max(axis=1)), other.max(axis=1), 0.0)
    return pd.DataFrame({
        "flagged": flagged,
        "suggested": np.where(flagged, suggested, -1),
        "score": np.where(flagged, best_other - given, np.nan),
        "self_confidence": given,
    }), thresholds


def outlier_scores(fs: FeatureSet, quantile: float = 0.99) -> np.ndarray:
    """Per photo: the least over classes of (cosine distance to the class mean) / (that
    distance's ``quantile`` over the class's own training photos). Over 1: far from every class."""
    x = _unit(fs.features)
    train = fs.splits == "train"
    k = len(fs.class_names)
    means = np.zeros((k, x.shape[1]), np.float32)
    scale = np.ones(k)
    for j in range(k):
        own = x[train & (fs.labels == j)]
        if len(own) == 0:
            own = x[fs.labels == j]
        if len(own) == 0:
            continue
        means[j] = _unit(own.mean(axis=0, keepdims=True))[0]
        scale[j] = max(np.quantile(1.0 - own @ means[j], quantile), 1e-6)
    dist = 1.0 - x @ means.T
    present = np.bincount(fs.labels, minlength=k) > 0
    ratio = dist / scale[None, :]
    ratio[:, ~present] = np.inf
    return ratio.min(axis=1)


def gallery(rows: pd.DataFrame, title: str, captions: list[str], *, n: int = 24, size: int = 128, cols: int = 6):
    """A figure of up to ``n`` photos (``rows.path``) with captions, decoded with the project's
    decoder (a photo that no longer decodes shows as grey)."""
    from transfer_lab.reports.plots import subplots

    from transfer_lab.data.imaging import ImageRejected, load_rgb

    paths = rows["path"].astype(str).tolist()[:n]
    count = max(1, len(paths))
    ncols = min(cols, count)
    nrows = (count + ncols - 1) // ncols
    fig, axes = subplots(nrows, ncols, figsize=(2.2 * ncols, 2.5 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, path, caption in zip(axes.ravel(), paths, captions):
        try:
            ax.imshow(load_rgb(path, size))
        except ImageRejected:
            ax.imshow(np.full((size, size, 3), 128, np.uint8))
        ax.set_title(caption, fontsize=7)
    if not paths:
        axes[0, 0].text(0.5, 0.5, "none found", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
