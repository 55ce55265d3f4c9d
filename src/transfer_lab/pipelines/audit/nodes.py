"""Nodes of the audit pipeline: the cached features and data_ingestion's near-duplicates in, the audit tables,
galleries and counts out."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from transfer_lab.data import neardup
from transfer_lab.models import audit
from transfer_lab.params.audit import AuditParams

log = logging.getLogger(__name__)

#: the columns of near_duplicates.csv (data_ingestion) and audit_near_duplicates.csv (the audit)
NEAR_COLUMNS = ["path", "group", "match", "distance", "kind", "split", "label"]
ISSUE_COLUMNS = ["path", "split", "given", "suggested", "score"]
OUTLIER_COLUMNS = ["path", "split", "label", "nearest_class", "score"]


def _feature_near_duplicates(fs: audit.FeatureSet, pairs: pd.DataFrame, hash_rows: pd.DataFrame) -> pd.DataFrame:
    """Rows for the feature-space pairs the hash did not already group together (the group: the
    first photo of the pairs' chain; the match: the most similar partner)."""
    known_group = dict(zip(hash_rows["path"].astype(str), hash_rows["group"].astype(str)))
    uf_index = {p: i for i, p in enumerate(fs.paths)}
    new = [(a, b, s) for a, b, s in pairs.itertuples(index=False)
           if known_group.get(a, a) != known_group.get(b, b)]
    if not new:
        return pd.DataFrame(columns=NEAR_COLUMNS)
    uf = neardup.UnionFind(len(fs.paths))
    for a, b, _ in new:
        uf.union(uf_index[a], uf_index[b])
    best: dict[str, tuple[str, float]] = {}
    for a, b, s in new:
        for p, q in ((a, b), (b, a)):
            if p not in best or s > best[p][1]:
                best[p] = (q, s)
    rows = [(p, str(fs.paths[uf.find(uf_index[p])]), q, round(1.0 - s, 5), "features", str(fs.splits[uf_index[p]]),
             fs.class_names[int(fs.labels[uf_index[p]])])
            for p, (q, s) in sorted(best.items())]
    return pd.DataFrame(rows, columns=NEAR_COLUMNS)


def audit_features(
    features: dict[str, np.ndarray], near_duplicates: pd.DataFrame, audit_params: AuditParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """audit_near_duplicates (data_ingestion's near_duplicates and, below them, the feature-space
    pairs across splits the hash missed), label_issues (most likely first), outliers and the
    counts (audit.json)."""
    start = time.perf_counter()
    fs = audit.feature_set(features)
    names = fs.class_names

    hash_rows = near_duplicates.reindex(columns=NEAR_COLUMNS)
    pairs = audit.cross_split_pairs(fs, audit_params.near_duplicates.similarity)
    feature_rows = _feature_near_duplicates(fs, pairs, hash_rows)
    near = pd.concat([hash_rows, feature_rows], ignore_index=True).reindex(columns=NEAR_COLUMNS)

    li = audit_params.label_issues
    probs = audit.out_of_fold_probabilities(fs.features, fs.labels, len(names), folds=li.folds, c=li.c,
                                            max_iter=li.max_iter, seed=li.seed, components=li.components)
    if li.neighbours:
        probs = 0.5 * probs + 0.5 * audit.neighbour_probabilities(fs.features, fs.labels, len(names), li.neighbours)
    cl, thresholds = audit.confident_learning(probs, fs.labels, li.rule)
    flagged = cl[cl["flagged"]].sort_values("score", ascending=False, kind="stable")
    issues = pd.DataFrame({
        "path": fs.paths[flagged.index],
        "split": fs.splits[flagged.index],
        "given": [names[i] for i in fs.labels[flagged.index]],
        "suggested": [names[i] for i in flagged["suggested"]],
        "score": flagged["score"].round(5).to_numpy(),
    }, columns=ISSUE_COLUMNS)

    ratio = audit.outlier_scores(fs, audit_params.outliers.quantile)
    out_idx = np.nonzero(ratio > 1.0)[0]
    out_idx = out_idx[np.argsort(-ratio[out_idx], kind="stable")]
    x = audit._unit(fs.features)
    nearest = np.zeros(len(fs.paths), int)
    if len(out_idx):
        means = np.stack([audit._unit(x[fs.labels == j].mean(0, keepdims=True))[0] if (fs.labels == j).any()
                          else np.zeros(x.shape[1], np.float32) for j in range(len(names))])
        nearest[out_idx] = (x[out_idx] @ means.T).argmax(1)
    outliers = pd.DataFrame({
        "path": fs.paths[out_idx], "split": fs.splits[out_idx],
        "label": [names[i] for i in fs.labels[out_idx]],
        "nearest_class": [names[i] for i in nearest[out_idx]],
        "score": np.round(ratio[out_idx], 4),
    }, columns=OUTLIER_COLUMNS)

    wall = time.perf_counter() - start
    oof_accuracy = float((probs.argmax(1) == fs.labels).mean()) if len(fs.labels) else 0.0
    report = {
        "n_images": int(len(fs.paths)),
        "n_near_duplicates_hash": int(len(hash_rows)),
        "n_near_duplicate_groups_hash": int(hash_rows["group"].nunique()) if len(hash_rows) else 0,
        "n_near_duplicates_features": int(len(feature_rows)),
        "n_cross_split_pairs_features": int(len(pairs)),
        "n_label_issues": int(len(issues)),
        "label_issues_by_split": {s: int((issues["split"] == s).sum()) for s in audit.SPLITS},
        "n_outliers": int(len(outliers)),
        "out_of_fold_accuracy": round(oof_accuracy, 4),
        "class_thresholds_mean": round(float(np.mean(thresholds)), 4) if len(thresholds) else None,
        "similarity_threshold": audit_params.near_duplicates.similarity,
        "wall_s": round(wall, 3),
    }
    log.info("Audit of %d photos in %.1f s: %d near-duplicates by hash, %d more in feature space, "
             "%d likely label errors, %d outliers (data/08_reporting/).", report["n_images"], wall,
             len(hash_rows), len(feature_rows), len(issues), len(outliers))
    return near, issues, outliers, report


def label_issues_gallery(label_issues: pd.DataFrame, audit_params: AuditParams) -> Any:
    g = audit_params.gallery
    captions = [f"{r.given} -> {r.suggested}\n{r.split}, score {r.score:.2f}"
                for r in label_issues.head(g.n).itertuples(index=False)]
    return audit.gallery(label_issues, f"Likely label errors ({len(label_issues)}), most likely first", captions,
                         n=g.n, size=g.image_size)


def outliers_gallery(audit_outliers: pd.DataFrame, audit_params: AuditParams) -> Any:
    g = audit_params.gallery
    captions = [f"{r.label} (nearest {r.nearest_class})\n{r.split}, {r.score:.2f}x"
                for r in audit_outliers.head(g.n).itertuples(index=False)]
    return audit.gallery(audit_outliers, f"Outliers: far from every class ({len(audit_outliers)})", captions,
                         n=g.n, size=g.image_size)
