"""Layouts, labels and the split (split_images); the source check of acquire_source."""

from __future__ import annotations

import pandas as pd
import pytest

from transfer_lab.data import layouts, sources
from transfer_lab.data.manifest import MANIFEST_COLUMNS, ManifestError
from transfer_lab.params.data import DataParams
from transfer_lab.pipelines.data_ingestion import nodes


def _oxford(root, make_image, breeds=("Abyssinian", "Bengal", "beagle", "pug"), n=10):
    for b in breeds:
        for i in range(1, n + 1):
            make_image(root / "images" / f"{b}_{i}.jpg", seed=hash((b, i)) % 1000)
    return root


def test_oxford_labels_breed_and_species(tmp_path, make_image):
    root = _oxford(tmp_path / "pets", make_image)
    (root / "images" / "README.txt").write_text("hello")
    files, unlabelled, layout = layouts.scan(root, "auto", "breed")
    assert layout == "oxford_pets"
    assert set(files.label) == {"Abyssinian", "Bengal", "beagle", "pug"}
    assert set(files[files.label == "Bengal"].species) == {"cat"}
    assert set(files[files.label == "pug"].species) == {"dog"}
    assert list(unlabelled.reason) == [layouts.NO_LABEL]
    files, _, _ = layouts.scan(root, "oxford_pets", "species")
    assert set(files.label) == {"cat", "dog"}
    assert (files.label == "cat").sum() == 20


@pytest.mark.parametrize("inner", ["PetImages", ""])
def test_pet_images_layout(tmp_path, make_image, inner):
    root = tmp_path / "zip"
    for cls in ("Cat", "Dog"):
        for i in range(3):
            make_image(root / inner / cls / f"{i}.jpg", seed=i + (10 if cls == "Dog" else 0))
    (root / "readme.txt").write_text("licence")
    files, _, layout = layouts.scan(root, "auto", "species")
    assert layout == "pet_images"
    assert sorted(files.label.value_counts().items()) == [("cat", 3), ("dog", 3)]
    with pytest.raises(layouts.LayoutError, match="not the oxford_pets layout"):
        layouts.scan(root, "oxford_pets", "breed")


def test_folders_layout_and_wrapper_folder(tmp_path, make_image):
    root = tmp_path / "archive" / "flowers"
    for cls in ("rose", "tulip"):
        for i in range(2):
            make_image(root / cls / "sub" / f"{i}.png", fmt="PNG", seed=i + len(cls))
    make_image(root / "stray.jpg")
    files, unlabelled, layout = layouts.scan(tmp_path / "archive", "auto", "breed")
    assert layout == "folders"
    assert sorted(set(files.label)) == ["rose", "tulip"]
    assert len(unlabelled) == 1 and unlabelled.path[0].endswith("stray.jpg")


def _images(labels_counts: dict[str, int]) -> pd.DataFrame:
    rows = []
    for label, n in labels_counts.items():
        for i in range(n):
            rows.append((f"/x/{label}/{i:04d}.jpg", label, f"{label}-{i}", 64, 64, "JPEG", 100, ""))
    return pd.DataFrame(rows, columns=["path", "label", "sha256", "width", "height", "format", "n_bytes", "species"])


def _split(images, seed=7, **fr):
    data = DataParams(source=".", split={"train": 0.6, "val": 0.2, "test": 0.2, "seed": seed, **fr})
    return nodes.split_images(images, pd.DataFrame(columns=nodes.REJECTED_COLUMNS), data)[:3]


def test_split_is_stratified_and_reproducible():
    images = _images({"a": 100, "b": 50, "c": 10})
    m1, _, summary = _split(images)
    assert tuple(m1.columns) == MANIFEST_COLUMNS
    m2, _, _ = _split(images.sample(frac=1, random_state=3))  # input order does not matter
    assert m1.set_index("path").split.equals(m2.set_index("path").split.loc[m1.path])
    for label, n in {"a": 100, "b": 50, "c": 10}.items():
        counts = m1[m1.label == label].split.value_counts()
        assert counts["test"] == round(0.2 * n) and counts["val"] == round(0.2 * n)
    m3, _, _ = _split(images, seed=8)
    assert not m1.split.equals(m3.set_index("path").split.loc[m1.path].reset_index(drop=True))
    assert summary["class_counts"]["test"] == {"a": 20, "b": 10, "c": 2}


def test_duplicates_stay_in_one_split_and_conflicts_are_rejected():
    images = _images({"a": 30, "b": 30})
    dupes = images.iloc[:10].copy()
    dupes["path"] = dupes["path"].str.replace(".jpg", "_copy.jpg")
    conflict = images[images.label == "b"].iloc[:2].copy()
    conflict["path"] = conflict["path"].str.replace("/b/", "/a/")
    conflict["label"] = "a"
    m, rejected, summary = _split(pd.concat([images, dupes, conflict]))
    by_hash = m.groupby("sha256").split.nunique()
    assert (by_hash == 1).all()
    assert summary["n_duplicates"] == 10
    assert (m.duplicate_of != "").sum() == 10
    assert set(rejected.reason) == {nodes.CONFLICT} and len(rejected) == 4
    assert not m.sha256.isin(conflict.sha256).any()


def test_too_few_images_in_a_class():
    with pytest.raises(ManifestError, match=r"'rare' \(2\).*at least 3"):
        _split(_images({"a": 30, "rare": 2}))
    m, _, _ = _split(_images({"a": 30, "rare": 2}), val=0.0, train=0.8)
    assert set(m[m.label == "rare"].split) == {"train", "test"}


def test_missing_source_fails_before_any_work(tmp_path):
    with pytest.raises(sources.SourceError, match=r"data.source not found: .*nope.*data.source=../shared"):
        nodes.acquire_source(DataParams(source=str(tmp_path / "nope")))


def test_a_folder_without_labels_is_refused(tmp_path, make_image):
    make_image(tmp_path / "a.jpg")
    make_image(tmp_path / "b.jpg", seed=1)
    folder, refused = nodes.acquire_source(DataParams(source=str(tmp_path)))
    with pytest.raises(layouts.LayoutError, match="no labels.*data.layout=folders"):
        nodes.check_images(folder, refused, DataParams(source=str(tmp_path)))
