"""Fixtures of the audit tests: seeded photo sets made from ../shared photos (see seeded.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .seeded import SeededSet, seed_photo_set


@pytest.fixture
def seeded_photos(tmp_path: Path, shared_dir: Path):
    """``seeded_photos(n_per_class=150, start=0, n_originals=4, n_moved=20, seed=0)``: a PetImages
    cat/dog set under tmp_path with 6 copies of each of ``n_originals`` photos and ``n_moved``
    photos in the wrong folder."""

    def make(n_per_class: int = 150, start: int = 0, n_originals: int = 4, n_moved: int = 20,
             seed: int = 0) -> SeededSet:
        src = {c: sorted((shared_dir / "data" / "PetImages" / c).glob("*.jpg"))[start:start + n_per_class]
               for c in ("Cat", "Dog")}
        return seed_photo_set(src, tmp_path / "seeded" / "PetImages", n_originals=n_originals, n_moved=n_moved,
                              seed=seed)

    return make
