"""`kedro run --pipelines=data_ingestion` end to end, on generated photos and on ../shared."""

from __future__ import annotations

import json
import os
import stat
import tarfile

import pandas as pd
import pytest


def _snapshot(root):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def _make_seeded_folder(root, make_image):
    good = []
    for cls in ("ant", "bee"):
        for i in range(12):
            good.append(make_image(root / cls / f"{i}.jpg", size=(64, 48), seed=i + (100 if cls == "bee" else 0)))
    good.append(make_image(root / "ant" / "gif_named.jpg", fmt="GIF", mode="P", seed=7))
    good.append(make_image(root / "bee" / "cmyk.jpg", mode="CMYK", seed=8))
    (root / "ant" / "empty.jpg").write_bytes(b"")
    data = good[0].read_bytes()
    (root / "ant" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "bee" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    (root / "bee" / "page.jpg").write_text("<html><body>rate limited</body></html>")
    make_image(root / "bee" / "tiny.jpg", size=(8, 8))
    # an exact copy of an ant photo, inside the ant folder
    (root / "ant" / "copy_of_0.jpg").write_bytes(good[0].read_bytes())
    return good


def test_folder_with_broken_files(tmp_path, make_image, kedro_project):
    src = tmp_path / "photos"
    good = _make_seeded_folder(src, make_image)
    for p in src.rglob("*"):  # the source may be read-only (as ../shared is in CI)
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _snapshot(src)
    kedro_project.run("data_ingestion", {"data.source": str(src), "data.split.seed": 3})
    assert _snapshot(src) == before

    manifest = pd.read_csv(kedro_project.out("data/03_primary/manifest.csv"), keep_default_na=False)
    rejected = pd.read_csv(kedro_project.out("data/08_reporting/rejected_images.csv"))
    accepted = set(manifest.path)
    assert {str(p) for p in good} <= accepted
    assert len(manifest) == len(good) + 1  # + the exact copy, marked as a duplicate
    reasons = dict(zip(rejected.path.map(os.path.basename), rejected.reason))
    assert reasons == {
        "empty.jpg": "empty_file", "cut.jpg": "truncated", "Thumbs.db": "not_an_image",
        "page.jpg": "not_an_image", "tiny.jpg": "too_small",
    }
    copy = manifest[manifest.path.str.endswith("copy_of_0.jpg")].iloc[0]
    original = manifest[manifest.path == copy.duplicate_of].iloc[0]
    assert copy.split == original.split
    summary = json.loads(kedro_project.out("data/08_reporting/ingestion_summary.json").read_text())
    assert summary["rejected_counts"] == {"not_an_image": 2, "empty_file": 1, "truncated": 1, "too_small": 1}

    # Same source and seed -> the same split, in a fresh run.
    first = manifest.set_index("path").split
    kedro_project.run("data_ingestion", {"data.source": str(src), "data.split.seed": 3})
    again = pd.read_csv(kedro_project.out("data/03_primary/manifest.csv")).set_index("path").split
    assert again.loc[first.index].equals(first)


def test_archive_source(tmp_path, make_image, kedro_project):
    src = tmp_path / "photos"
    for cls in ("x", "y"):
        for i in range(6):
            make_image(src / cls / f"{i}.png", fmt="PNG", seed=i + (50 if cls == "y" else 0))
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="photos")
    kedro_project.run("data_ingestion", {"data.source": str(archive)})
    manifest = pd.read_csv(kedro_project.out("data/03_primary/manifest.csv"))
    assert sorted(manifest.label.unique()) == ["x", "y"] and len(manifest) == 12
    assert all("data/01_raw/extracted/photos-" in p for p in manifest.path)


@pytest.mark.slow
def test_pet_images_from_shared(shared_dir, kedro_project):
    kedro_project.run("data_ingestion", {"data.source": str(shared_dir / "data" / "PetImages"), "data.labels": "species"})
    m = pd.read_csv(kedro_project.out("data/03_primary/manifest.csv"))
    assert len(m) == 2000
    counts = m.groupby(["split", "label"]).size()
    assert counts["train"].to_dict() == {"cat": 700, "dog": 700}
    assert counts["test"].to_dict() == {"cat": 150, "dog": 150}


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["breed", "species"])
def test_oxford_from_shared(shared_dir, kedro_project, labels):
    kedro_project.run("data_ingestion", {"data.source": str(shared_dir / "data" / "oxford-iiit-pet"), "data.labels": labels})
    m = pd.read_csv(kedro_project.out("data/03_primary/manifest.csv"))
    rejected = pd.read_csv(kedro_project.out("data/08_reporting/rejected_images.csv"))
    assert len(m) == 852 and rejected.empty  # the GIF and the PNG behind .jpg names decode too
    assert set(m.format) == {"JPEG", "GIF", "PNG"}
    if labels == "breed":
        assert m.label.nunique() == 37
        assert (m.groupby("label").split.nunique() == 3).all()  # every breed in every split
    else:
        assert sorted(m.label.unique()) == ["cat", "dog"]
        assert (m.label == m.species).all()
