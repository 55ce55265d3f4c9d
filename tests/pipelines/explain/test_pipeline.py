"""The explain pipeline as Kedro runs it (SequentialRunner) over an in-memory catalog and a tiny
classifier: photos in; .npy maps, PNG overlays, the index and the faithfulness report out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from transfer_lab.io.datasets import Deferred
from transfer_lab.io.explanations import ExplanationFolderDataset
from transfer_lab.models.choice import ModelChoiceError
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.explain import ExplainParams
from transfer_lab.pipelines.explain import create_pipeline
from transfer_lab.pipelines.explain.nodes import select_photos, unique_names

from .tiny import SIZE, grey_with_red_patch, redness_model

BACKBONE = BackboneParams.model_validate({"name": "mobilenet_v2", "weights": "none", "image_size": SIZE})


def _deferred(value=None):
    return Deferred(MemoryDataset(value, copy_mode="assign") if value is not None else MemoryDataset())


def _photos(folder, n=4):
    from PIL import Image

    images, _ = grey_with_red_patch(n=n, seed=7)
    for i, image in enumerate(images):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(sub / f"{i // 2}.png")
    (folder / "notes.txt").write_text("not a photo")
    return sorted(str(p) for p in folder.rglob("*.png"))


def _catalog(tmp_path, params, manifest=None):
    return DataCatalog({
        "params:explain": MemoryDataset(params),
        "params:backbone": MemoryDataset(BACKBONE),
        "finetuned_classifier@lazy": MemoryDataset(_deferred(redness_model()), copy_mode="assign"),
        "head_classifier@lazy": MemoryDataset(_deferred(), copy_mode="assign"),
        "class_names@lazy": MemoryDataset(_deferred(["other", "red"]), copy_mode="assign"),
        "manifest@lazy": MemoryDataset(_deferred(manifest), copy_mode="assign"),
        "explanations": ExplanationFolderDataset(str(tmp_path / "out" / "explanations"), mlflow_artifact_path=None),
        "explanations_report": MemoryDataset(copy_mode="assign"),
        "explanations_gallery": MemoryDataset(copy_mode="assign"),
    })


def test_pipeline_writes_maps_overlays_index_and_faithfulness(tmp_path):
    photos = _photos(tmp_path / "photos")
    params = ExplainParams(source=str(tmp_path / "photos"), steps=2, max_images=None)
    catalog = _catalog(tmp_path, params)
    SequentialRunner().run(create_pipeline(), catalog)

    folder = tmp_path / "out" / "explanations"
    index = pd.read_csv(folder / "explanations.csv")
    assert list(index.columns[:5]) == ["path", "map", "label", "probability", "overlay"]  # the four first
    assert sorted(index["path"]) == photos
    assert sorted(index["map"]) == ["a_0.npy", "a_1.npy", "b_0.npy", "b_1.npy"]
    for row in index.itertuples():
        saliency = np.load(folder / row.map)
        assert saliency.shape == (SIZE, SIZE) and saliency.dtype == np.float32
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
        assert (folder / row.overlay).is_file()
    assert set(index["label"]) == {"red"}  # the predicted class of every patch photo
    probs = np.asarray(redness_model()(np.stack([np.asarray(__import__("PIL.Image").Image.open(p), np.float32)
                                                 for p in index["path"]])))[:, 1]
    np.testing.assert_allclose(index["probability"], probs, rtol=1e-4)

    report = catalog.load("explanations_report")
    assert report["n_photos"] == 4 and report["method"] == "gradcam_blurgrad"
    assert 0.0 <= report["deletion"]["beats_random_share"] <= 1.0
    assert np.isfinite(report["sanity"]["rank_correlation_mean"])
    assert set(report["passed"]) == {"sanity", "deletion"}
    gallery = catalog.load("explanations_gallery")
    assert sum(bool(ax.images) for ax in gallery.axes) == 4
    loaded = catalog.load("explanations")  # the saved artefact reads back whole
    assert set(loaded) == {"a_0", "a_1", "b_0", "b_1"} and loaded["a_0"]["map"].shape == (SIZE, SIZE)


def test_source_null_takes_a_capped_sample_of_the_test_split(tmp_path):
    photos = _photos(tmp_path / "photos")
    manifest = pd.DataFrame({"path": photos + ["/elsewhere/train.jpg"], "label": ["x"] * 5,
                             "split": ["test"] * 4 + ["train"]})
    params = ExplainParams(max_images=3, faithfulness=False)
    chosen = select_photos(params, _deferred(manifest), _deferred(redness_model()), _deferred())
    assert len(chosen) == 3 and set(chosen) <= set(photos) and chosen == sorted(chosen)
    catalog = _catalog(tmp_path, params, manifest)
    SequentialRunner().run(create_pipeline(), catalog)
    assert catalog.load("explanations_report") == {"method": "gradcam_blurgrad", "model": "finetuned", "n_photos": 3}


def test_a_missing_model_or_manifest_fails_first_saying_what_to_run(tmp_path):
    with pytest.raises(ModelChoiceError, match="kedro run --pipelines=head_training"):
        select_photos(ExplainParams(model="head"), _deferred(), _deferred(redness_model()), _deferred())
    from kedro.io import DatasetError

    class Missing:
        def __call__(self):
            raise DatasetError("Table not found: data/03_primary/manifest.csv. Run `kedro run "
                               "--pipelines=data_ingestion` first.")

    with pytest.raises(ValueError, match="explain.source is null.*data_ingestion.*explain.source="):
        select_photos(ExplainParams(), Missing(), _deferred(redness_model()), _deferred())


def test_a_wrong_target_or_layer_names_the_key(tmp_path):
    _photos(tmp_path / "photos", n=2)
    for params, says in ((ExplainParams(source=str(tmp_path / "photos"), target="blue"), "explain.target=blue"),
                         (ExplainParams(source=str(tmp_path / "photos"), layer="conv_b"), "explain.layer=conv_b")):
        with pytest.raises(Exception, match=says):
            SequentialRunner().run(create_pipeline(), _catalog(tmp_path, params))


def test_unique_names_tell_photos_apart():
    assert unique_names(["/p/Cat/1.jpg", "/p/Dog/1.jpg", "/p/Dog/2.jpg"]) == ["Cat_1", "Dog_1", "Dog_2"]
    assert unique_names(["/p/x.jpg", "/p/x.jpg"]) == ["x", "x_2"]
    assert unique_names(["/p/a/1.jpg", "/p/b/2.jpg"]) == ["1", "2"]
