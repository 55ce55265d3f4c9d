"""The unfamiliar-photo statistics on synthetic features: fitted on training features only,
threshold on validation (<= max_flagged flagged there), far-away features flagged."""

from __future__ import annotations

import numpy as np
import pytest

from transfer_lab.models import unfamiliar

RNG = np.random.default_rng(0)
D = 16
CENTRES = np.stack([np.eye(D)[0] * 6, np.eye(D)[1] * 6])


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return CENTRES[y] + rng.normal(0, 1, (n, D)) + 10.0, y  # away from the origin (cosine distances mean something)


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "msp", "energy"])
def test_threshold_on_validation_and_far_features_flagged(method):
    x, y = blobs(400, 1)
    v, _ = blobs(200, 2)
    t, _ = blobs(200, 3)
    kernel = np.zeros((D, 2), np.float32)
    kernel[0, 0], kernel[1, 1] = 2.0, 2.0
    stats = unfamiliar.fit(x, y, v, method=method, k=5, max_flagged=0.05, head=(kernel, np.zeros(2, np.float32)))
    assert float(stats["val_flagged"]) <= 0.05
    flags, scores = unfamiliar.flag(stats, t)
    assert flags.mean() <= 0.12  # familiar photos it never saw
    assert scores.shape == (200,)
    if method in ("knn", "mahalanobis"):  # distances: features unlike any training ones
        far = np.random.default_rng(4).normal(0, 1, (100, D)) * 3 - 10.0
        assert unfamiliar.flag(stats, far)[0].mean() >= 0.95
    else:  # the head's confidence: features half way between the two classes
        mid = (CENTRES[0] + CENTRES[1]) / 2 + 10.0 + np.random.default_rng(5).normal(0, 0.1, (100, D))
        assert unfamiliar.flag(stats, mid)[0].mean() >= 0.95
    assert unfamiliar.summary(stats)["method"] == method


def test_stats_are_plain_arrays_and_survive_npz(tmp_path):
    x, y = blobs(100, 1)
    stats = unfamiliar.fit(x, y, blobs(50, 2)[0], method="knn", k=3)
    np.savez(tmp_path / "u.npz", **stats)
    with np.load(tmp_path / "u.npz", allow_pickle=False) as data:
        back = {k: data[k] for k in data.files}
    q = blobs(20, 9)[0]
    np.testing.assert_allclose(unfamiliar.scores(back, q), unfamiliar.scores(stats, q))


def test_errors_name_the_problem():
    x, y = blobs(50, 1)
    with pytest.raises(unfamiliar.UnfamiliarError, match="unfamiliar.method=lof"):
        unfamiliar.fit(x, y, x, method="lof")
    with pytest.raises(unfamiliar.UnfamiliarError, match="validation photos"):
        unfamiliar.fit(x, y, x[:0])
    with pytest.raises(unfamiliar.UnfamiliarError, match="needs the head"):
        unfamiliar.fit(x, y, x, method="energy")
    stats = unfamiliar.fit(x, y, x, method="knn")
    with pytest.raises(unfamiliar.UnfamiliarError, match="another backbone"):
        unfamiliar.scores(stats, np.zeros((2, D + 1)))
