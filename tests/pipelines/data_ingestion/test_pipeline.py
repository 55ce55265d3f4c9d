"""data_ingestion as a pipeline: with Kedro's SequentialRunner over an in-memory catalog, and
`kedro run --pipelines=data_ingestion` through a KedroSession, on generated photos and on ../shared."""

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


def test_pipeline_on_an_in_memory_catalog(tmp_path, make_image):
    """The pipeline's nodes wired together, as Kedro's starters test them: typed parameters in, the
    manifest, rejects and summary out, nothing written but the outputs we ask for."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from transfer_lab.data.manifest import MANIFEST_COLUMNS
    from transfer_lab.params.data import DataParams
    from transfer_lab.pipelines.data_ingestion.pipeline import create_pipeline

    src = tmp_path / "photos"
    good = _make_seeded_folder(src, make_image)
    data = DataParams(source=str(src), split={"train": 0.5, "val": 0.25, "test": 0.25, "seed": 3}, workers=2)
    catalog = DataCatalog({"params:data": MemoryDataset(data)})
    outputs = SequentialRunner().run(create_pipeline(), catalog)

    assert set(outputs) == {"manifest@csv", "rejected_images", "ingestion_summary", "near_duplicates"}
    manifest = outputs["manifest@csv"].load()
    rejected = outputs["rejected_images"].load()
    summary = outputs["ingestion_summary"].load()
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert set(manifest.path) == {str(p) for p in good} | {str(src / "ant" / "copy_of_0.jpg")}
    assert sorted(map(os.path.basename, rejected.path)) == ["Thumbs.db", "cut.jpg", "empty.jpg", "page.jpg", "tiny.jpg"]
    unique = manifest[manifest.duplicate_of == ""]
    # gif_named.jpg and cmyk.jpg are ant 7 and ant 8 (same seed) in other formats: near-duplicates,
    # each pair in one split (cmyk.jpg even lies in the bee folder); 12 units a class then split 6/3/3.
    near = outputs["near_duplicates"].load()
    pairs = {("gif_named.jpg", "7.jpg"), ("7.jpg", "gif_named.jpg"), ("cmyk.jpg", "8.jpg"), ("8.jpg", "cmyk.jpg")}
    assert set(zip(near.path.map(os.path.basename), near.match.map(os.path.basename))) == pairs
    by_path = manifest.set_index("path")
    for copy, original in (("ant/gif_named.jpg", "ant/7.jpg"), ("bee/cmyk.jpg", "ant/8.jpg")):
        assert by_path.split[str(src / copy)] == by_path.split[str(src / original)]
        assert by_path.near_duplicate_of[str(src / copy)] == str(src / original)  # the larger or first photo
    units = unique[unique.near_duplicate_of == ""]
    assert units.groupby("label").split.value_counts().to_dict() == {
        ("ant", "train"): 6, ("ant", "val"): 3, ("ant", "test"): 3,
        ("bee", "train"): 6, ("bee", "val"): 3, ("bee", "test"): 3,
    }
    assert summary["n_duplicates"] == 1 and summary["n_rejected"] == 5 and summary["source"] == str(src)
    assert summary["n_near_duplicates"] == 4 and summary["n_near_duplicate_groups"] == 2
    assert summary["split_counts"] == {s: int((manifest.split == s).sum()) for s in ("train", "val", "test")}


def test_kedro_run_refuses_a_wrong_value_before_any_node(tmp_path, kedro_project, caplog):
    with pytest.raises(Exception, match=r"data.layout=coco is not valid: .*'folders'"):
        kedro_project.run("data_ingestion", {"data.source": str(tmp_path), "data.layout": "coco"})
    assert "Running node" not in caplog.text and not kedro_project.out("data/03_primary/manifest.csv").exists()


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


def _oxford_truth(images):
    """What the Oxford-IIIT Pet folder holds, read from its file names: photos per breed, and the
    species of each breed (cat breeds are capitalised, dog breeds lower case)."""
    from transfer_lab.data.layouts import OXFORD_NAME

    per_breed = {}
    for p in images.iterdir():
        match = OXFORD_NAME.match(p.name)
        if match and p.suffix.lower() == ".jpg":
            per_breed[match["breed"]] = per_breed.get(match["breed"], 0) + 1
    return per_breed


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["breed", "species"])
def test_oxford_from_shared(shared_dir, kedro_project, labels):
    root = shared_dir / "data" / "oxford-iiit-pet"
    per_breed = _oxford_truth(root / "images")
    n_photos = sum(per_breed.values())
    assert len(per_breed) == 37 and n_photos == 3237  # the folder as ../shared/GUIDE.md describes it

    kedro_project.run("data_ingestion", {"data.source": str(root), "data.labels": labels})
    m = pd.read_csv(kedro_project.out("data/03_primary/manifest.csv"), keep_default_na=False)
    rejected = pd.read_csv(kedro_project.out("data/08_reporting/rejected_images.csv"))
    summary = json.loads(kedro_project.out("data/08_reporting/ingestion_summary.json").read_text())
    assert rejected.empty and len(m) == n_photos  # every photo accepted, the GIF and the PNG behind .jpg names too
    formats = dict(zip(m.path.map(os.path.basename), m.format))
    assert formats["Abyssinian_34.jpg"] == "GIF" and formats["Abyssinian_5.jpg"] == "PNG"
    assert set(m.format) == {"JPEG", "GIF", "PNG"}
    assert summary["n_images"] == n_photos and sum(summary["split_counts"].values()) == n_photos
    cat_breeds = {b for b in per_breed if b[0].isupper()}
    species = m.path.map(lambda p: "cat" if os.path.basename(p)[0].isupper() else "dog")
    assert (m.species == species).all()
    # the split's units: one per group of identical files and near-duplicates (the Oxford set has
    # a few true duplicates under other names; each group is in one split)
    assert (m[m.near_duplicate_of != ""].groupby("near_duplicate_of").split.nunique() == 1).all()
    near = pd.read_csv(kedro_project.out("data/08_reporting/near_duplicates.csv"), keep_default_na=False)
    assert 0 < len(near) <= 60 and summary["n_near_duplicates"] == len(near)
    split_of = dict(zip(m.path, m.split))
    assert all(split_of[p] == split_of[g] for p, g in zip(near.path, near.group))
    unique = m[(m.duplicate_of == "") & (m.near_duplicate_of == "")]
    if labels == "breed":
        assert m.groupby("label").size().to_dict() == per_breed
        assert (m.groupby("label").split.nunique() == 3).all()  # every breed in every split
        groups = unique.groupby("label")
    else:
        assert m.label.value_counts().to_dict() == {
            "cat": sum(per_breed[b] for b in cat_breeds), "dog": sum(n for b, n in per_breed.items() if b not in cat_breeds)}
        assert (m.label == m.species).all()
        groups = unique.groupby("label")
    for label, rows in groups:  # 70 / 15 / 15 of each class's units
        counts = rows.split.value_counts()
        assert counts["test"] == round(0.15 * len(rows)) and counts["val"] == round(0.15 * len(rows)), label
