"""Perceptual hashes: copies made six ways match their originals, different photos do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transfer_lab.data import neardup
from transfer_lab.data.imaging import load_rgb

from .seeded import TRANSFORMS


def test_mirror_hash_is_the_hash_of_the_mirrored_photo(make_image, tmp_path):
    rng = np.random.default_rng(0)
    arr = np.clip(rng.normal(128, 60, (96, 128, 3)).cumsum(axis=1) / 20, 0, 255).astype(np.uint8)
    h = neardup.photo_hash(arr)
    m = neardup.photo_hash(arr[:, ::-1])
    assert neardup.hamming(h.mirror[None], m.phash[None])[0, 0] <= 2
    assert neardup.hamming(h.phash[None], m.phash[None])[0, 0] > 40
    back = neardup.from_hex(h.hex())
    assert all(np.array_equal(a, b) for a, b in zip((back.phash, back.mirror, back.centre),
                                                    (h.phash, h.mirror, h.centre)))


def test_union_find_groups_and_best_matches():
    pairs = [(0, 2, 10, False), (2, 5, 4, True), (3, 4, 1, False)]
    assert neardup.groups(6, pairs).tolist() == [0, 1, 0, 3, 3, 0]
    best = neardup.best_matches(6, pairs)
    assert best[2] == (5, 4, True) and best[0] == (2, 10, False)


def test_copies_match_and_different_photos_do_not(shared_dir, tmp_path):
    photos = sorted((shared_dir / "data" / "PetImages" / "Dog").glob("*.jpg"))[:40]
    hashes = [neardup.photo_hash(load_rgb(p)) for p in photos]
    base = neardup.stack(hashes)
    dist, _ = neardup.distances(base, base)
    off = dist[np.triu_indices(len(photos), 1)]
    assert off.min() > neardup.DEFAULT_THRESHOLD, off.min()
    for i, p in enumerate(photos[:6]):
        with Image.open(p) as im:
            im = im.convert("RGB")
            for name, make in TRANSFORMS.items():
                copy = neardup.stack([neardup.photo_hash(load_rgb(make(im)))])
                d, _ = neardup.distances(copy, base)
                assert d[0].argmin() == i and d[0, i] <= neardup.DEFAULT_THRESHOLD, (p.name, name, d[0, i])


def test_near_duplicate_table_lists_each_member_once(shared_dir, tmp_path):
    photos = sorted((shared_dir / "data" / "PetImages" / "Cat").glob("*.jpg"))[:5]
    paths = [str(p) for p in photos]
    hashes = [neardup.photo_hash(load_rgb(p)) for p in photos]
    with Image.open(photos[1]) as im:
        copy = tmp_path / "copy.jpg"
        copy.write_bytes(TRANSFORMS["crop6"](im.convert("RGB")))
    paths.append(str(copy))
    hashes.append(neardup.hash_file(copy))
    table = neardup.near_duplicate_table(paths, hashes)
    assert sorted(table["path"]) == sorted([paths[1], str(copy)])
    assert set(table["group"]) == {paths[1]} and table["distance"].max() <= neardup.DEFAULT_THRESHOLD


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_transforms_write_decodable_jpegs(kind, make_image, tmp_path):
    src = make_image(tmp_path / "a.jpg", size=(120, 90), seed=3)
    with Image.open(src) as im:
        data = TRANSFORMS[kind](im.convert("RGB"))
    assert load_rgb(data).ndim == 3
