"""Near-duplicates at ingestion, before the split: copies of ../shared photos made six ways land
in their original's split, are listed in near_duplicates, and keep=one keeps one photo a group."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from transfer_lab.data import neardup
from transfer_lab.params.data import DataParams
from transfer_lab.pipelines.data_ingestion import nodes
from tests.pipelines.audit.seeded import seed_photo_set


@pytest.fixture
def seeded(tmp_path, shared_dir):
    src = {c: sorted((shared_dir / "data" / "PetImages" / c).glob("*.jpg"))[900:912] for c in ("Cat", "Dog")}
    out = seed_photo_set(src, tmp_path / "PetImages", n_originals=3, n_moved=0, seed=4)
    # an identical file of one copy: it follows that copy (duplicate_of) into the group's split
    copy = sorted(out.copies)[0]
    shutil.copyfile(copy, copy.replace(".jpg", "_again.jpg"))
    return out, copy.replace(".jpg", "_again.jpg"), copy


def _ingest(root, **near):
    data = DataParams(source=str(root), labels="species", workers=2, near_duplicates=near,
                      split={"train": 0.5, "val": 0.25, "test": 0.25, "seed": 1})
    folder, refused = nodes.acquire_source(data)
    images, rejected = nodes.check_images(folder, refused, data)
    return (images, *nodes.split_images(images, rejected, data))


def test_copies_land_in_their_originals_split_and_are_listed(seeded):
    s, again, copy = seeded
    images, manifest, rejected, summary, near = _ingest(s.root)
    assert images["phash"].str.len().eq(3 * neardup.N_WORDS * 16).all()  # every photo hashed (none is plain)
    by_path = manifest.set_index("path")
    for c, (original, kind) in s.copies.items():
        assert by_path.split[c] == by_path.split[original], kind
        assert by_path.near_duplicate_of[c] == original, kind  # the original: the largest, first on a tie
    assert by_path.duplicate_of[again] == copy and by_path.split[again] == by_path.split[copy]
    assert by_path.near_duplicate_of[again] == s.copies[copy][0]
    assert set(by_path.near_duplicate_of[by_path.near_duplicate_of != ""].index) == set(s.copies) | {again}
    assert list(near.columns) == nodes.NEAR_DUPLICATE_COLUMNS
    assert set(near.path) == set(s.copies) | set(s.originals)  # distinct photos only
    assert set(near.group) == set(s.originals) and (near.distance <= 56).all()
    assert set(near[near.path.str.contains("_mirror")].kind) == {"hash_mirror"}
    assert (near.split == near.group.map(by_path.split)).all()
    assert summary["n_near_duplicates"] == 21 and summary["n_near_duplicate_groups"] == 3
    # the split counts a group once: 8 units a class (12 photos, 3 + 1 groups), 4/2/2 each
    assert rejected.empty and summary["split_counts"]["val"] >= 4


def test_keep_one_keeps_the_original_of_each_group(seeded):
    s, again, copy = seeded
    _, manifest, rejected, summary, near = _ingest(s.root, keep="one")
    assert set(manifest.path) & (set(s.copies) | {again}) == set()
    assert set(s.originals) <= set(manifest.path) and (manifest.near_duplicate_of == "").all()
    assert set(rejected.path) == set(s.copies) | {again} and set(rejected.reason) == {nodes.NEAR_DUPLICATE}
    assert rejected.detail.str.contains("keep=one").all()
    assert summary["n_near_duplicates_left_out"] == 19 and len(near) == 21  # the table still lists every member
    assert len(manifest) == 24


def test_threshold_zero_groups_identical_hashes_only(seeded):
    s, _, _ = seeded
    _, manifest, _, _, near = _ingest(s.root, threshold=0)
    assert (near.distance == 0).all() and len(near) < 21  # some copies (re-encoded, brightened) hash alike
    assert set(near.path) <= set(s.copies) | set(s.originals)


def test_groups_pick_the_largest_photo_and_skip_plain_ones(make_image, tmp_path):
    rng = np.random.default_rng(0)
    arr = np.clip(rng.normal(128, 60, (96, 128, 3)).cumsum(axis=1) / 20, 0, 255).astype(np.uint8)
    small = neardup.photo_hash(np.asarray(Image.fromarray(arr).resize((64, 48), Image.LANCZOS)))
    big = neardup.photo_hash(arr)
    plain = neardup.photo_hash(np.full((64, 64, 3), 200, np.uint8))
    assert plain is None
    found = neardup.find_groups([small, None, big, plain], sizes=[48 * 64, 1, 96 * 128, 64 * 64])
    assert found.rep.tolist() == [2, 1, 2, 3] and found.members() == [0, 2]


@pytest.mark.parametrize("change,message", [
    ({"threshold": True}, r"data.near_duplicates.threshold=true is not valid: it must be a whole number"),
    ({"threshold": 300}, r"data.near_duplicates.threshold=300 is not valid: .*128.*--params"),
    ({"keep": "first"}, r"data.near_duplicates.keep=first is not valid: .*'all' or 'one'"),
    ({"treshold": 40}, r"data.near_duplicates.treshold is not a parameter. Did you mean data.near_duplicates.threshold"),
])
def test_near_duplicate_params_name_the_key(change, message):
    with pytest.raises(ValidationError, match=message):
        DataParams(near_duplicates=change)
    assert DataParams(near_duplicates={"keep": "ONE"}).near_duplicates.keep == "one"


def test_old_manifests_without_hashes_still_split():
    images = pd.DataFrame({"path": [f"/x/{c}/{i}.jpg" for c in "ab" for i in range(6)],
                           "label": [c for c in "ab" for _ in range(6)],
                           "sha256": [f"{c}{i}" for c in "ab" for i in range(6)], "width": 64, "height": 64,
                           "format": "JPEG", "n_bytes": 10, "species": ""})
    manifest, _, _, near = nodes.split_images(images, pd.DataFrame(columns=nodes.REJECTED_COLUMNS),
                                              DataParams(source="."))
    assert near.empty and (manifest.near_duplicate_of == "").all() and manifest.split.notna().all()
