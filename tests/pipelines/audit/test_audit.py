"""Audit in feature space: confident learning, outliers, cross-split pairs, the parameters and the
pipeline on an in-memory catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic
import pytest

from transfer_lab.models import audit
from transfer_lab.params.audit import AuditParams


def _features(n_per_class=40, k=3, d=32, seed=0, flip=(), copy=None):
    """Synthetic pooled features: k tight clusters; ``flip`` indices get a wrong label; ``copy``:
    (i, split) puts a near copy of photo i in another split."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, d)) * 3
    y = np.repeat(np.arange(k), n_per_class)
    x = np.abs(centres[y] + rng.normal(0, 1, (len(y), d))).astype(np.float32)
    given = y.copy()
    for i in flip:
        given[i] = (y[i] + 1) % k
    paths = np.asarray([f"/p/{i}.jpg" for i in range(len(y))])
    splits = np.asarray(["train", "train", "train", "val", "test"] * (len(y) // 5 + 1))[: len(y)]
    if copy is not None:
        i, split = copy
        x = np.vstack([x, x[i] * 1.01 + 0.01])
        given = np.append(given, given[i])
        paths = np.append(paths, "/p/copy.jpg")
        splits = np.append(splits, split)
    out = {"class_names": np.asarray([f"c{j}" for j in range(k)])}
    for s in ("train", "val", "test"):
        m = splits == s
        out[f"{s}_features"], out[f"{s}_labels"], out[f"{s}_paths"] = x[m], given[m].astype(np.int32), paths[m]
    return out


def test_confident_learning_flags_the_wrong_labels_first():
    flip = [3, 47, 90]
    fs = audit.feature_set(_features(flip=flip))
    probs = audit.out_of_fold_probabilities(fs.features, fs.labels, 3, folds=5)
    cl, thresholds = audit.confident_learning(probs, fs.labels)
    flipped = {f"/p/{i}.jpg" for i in flip}
    top = cl[cl.flagged].sort_values("score", ascending=False).index[:3]
    assert {fs.paths[i] for i in top} == flipped
    assert thresholds.shape == (3,) and (thresholds > 0.5).all()


def test_outliers_are_far_from_every_class():
    feats = _features()
    feats["test_features"] = np.vstack([feats["test_features"], -np.ones((1, 32), np.float32) * 5])
    feats["test_labels"] = np.append(feats["test_labels"], 0).astype(np.int32)
    feats["test_paths"] = np.append(feats["test_paths"], "/p/odd.jpg")
    fs = audit.feature_set(feats)
    ratio = audit.outlier_scores(fs, 0.99)
    assert fs.paths[ratio.argmax()] == "/p/odd.jpg" and ratio.max() > 1
    assert (ratio > 1).sum() <= 0.1 * len(ratio)  # the 99% quantile of 24 photos a class: held-out ones pass it more often


def test_cross_split_pairs_find_the_copy():
    fs = audit.feature_set(_features(copy=(0, "test")))
    pairs = audit.cross_split_pairs(fs, 0.98)
    assert set(map(tuple, pairs[["path", "match"]].to_numpy().tolist())) & {("/p/0.jpg", "/p/copy.jpg"),
                                                                              ("/p/copy.jpg", "/p/0.jpg")}
    assert len(pairs) == 1


def test_old_features_fail_naming_the_pipeline():
    with pytest.raises(audit.AuditError, match="feature_extraction"):
        audit.feature_set({"train_features": np.zeros((2, 2))})


def test_params_refuse_bad_values_naming_the_key():
    assert AuditParams().label_issues.folds == 5
    with pytest.raises(pydantic.ValidationError, match="audit.label_issues.folds"):
        AuditParams(label_issues={"folds": 1})
    with pytest.raises(pydantic.ValidationError, match="similarity"):
        AuditParams(near_duplicates={"similarty": 0.9})


def test_pipeline_on_an_in_memory_catalog(make_image, tmp_path):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from transfer_lab.pipelines.audit.pipeline import create_pipeline

    class _Kept(MemoryDataset):
        def _release(self) -> None:  # keep outputs for the asserts (the runner releases used ones)
            pass

    feats = _features(flip=[47, 90], copy=(0, "test"))
    # real files for the galleries
    for key in ("train_paths", "val_paths", "test_paths"):
        new = []
        for p in feats[key]:
            path = tmp_path / p.strip("/").replace("/", "_")
            make_image(path, size=(40, 40), seed=len(new))
            new.append(str(path))
        feats[key] = np.asarray(new)
    # data_ingestion's table: photos 1 and 2 are one group (the hash found them, one split)
    paths = feats["train_paths"]
    ingestion = pd.DataFrame({"path": [paths[1], paths[2]], "group": [paths[1]] * 2, "match": [paths[2], paths[1]],
                              "distance": [12, 12], "kind": ["hash", "hash"], "split": ["train"] * 2,
                              "label": ["c0"] * 2})
    catalog = DataCatalog({
        "features": MemoryDataset(feats), "near_duplicates": MemoryDataset(ingestion),
        "params:audit": MemoryDataset(AuditParams(near_duplicates={"similarity": 0.98}, gallery={"n": 4})),
    })
    for name in ("audit_near_duplicates", "label_issues@csv", "audit_outliers", "audit_report",
                 "label_issues_gallery", "outliers_gallery"):
        catalog[name] = _Kept()
    SequentialRunner().run(create_pipeline(), catalog)
    issues = catalog.load("label_issues@csv")
    assert list(issues.columns) == ["path", "split", "given", "suggested", "score"]
    assert {p.rsplit("_", 1)[-1] for p in issues["path"][:2]} == {"47.jpg", "90.jpg"}
    assert issues["score"].is_monotonic_decreasing
    near = catalog.load("audit_near_duplicates")
    assert list(near.columns) == ["path", "group", "match", "distance", "kind", "split", "label"]
    assert near["kind"].tolist() == ["hash", "hash", "features", "features"]  # ingestion's rows first
    assert near["path"].iloc[:2].tolist() == ingestion["path"].tolist()
    copies = near[near["kind"] == "features"]
    assert copies["path"].str.endswith("copy.jpg").any() and set(copies["split"]) == {"train", "test"}
    report = catalog.load("audit_report")
    assert report["n_label_issues"] == len(issues) and report["n_near_duplicates_features"] == 2
    assert report["n_near_duplicates_hash"] == 2
    assert catalog.load("label_issues_gallery") is not None
