"""feature_extraction: cache key, manifest rows, the cache folder, the nodes and the pipeline
in-process (tiny random-weight model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transfer_lab.data.manifest import ManifestError
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.feature_extraction import FeatureExtractionParams
from transfer_lab.pipelines.feature_extraction.nodes import (
    cache_file,
    cache_key,
    extract_features,
    feature_map_figure,
    usable_rows,
    weights_identity,
)

from .tiny import make_photos, manifest_for

TINY_BACKBONE = BackboneParams(name="mobilenet_v2", weights="none", image_size=32, alpha=0.35)
TINY = {"backbone.name": "mobilenet_v2", "backbone.weights": "none", "backbone.image_size": 32,
        "backbone.alpha": 0.35, "feature_extraction.batch_size": 4}


def _params(tmp_path, **over) -> FeatureExtractionParams:
    return FeatureExtractionParams(batch_size=4, cache_dir=str(tmp_path / "cache"), **over)


def test_cache_key_follows_photos_labels_and_backbone(tmp_path, make_image):
    rows = usable_rows(manifest_for(make_photos(tmp_path, make_image, n=4)))
    params = _params(tmp_path)
    key = cache_key(rows, TINY_BACKBONE, params)
    assert key == cache_key(rows.copy(), TINY_BACKBONE, _params(tmp_path))
    relabelled = rows.copy()
    relabelled.loc[0, "label"] = "bee"
    assert cache_key(relabelled, TINY_BACKBONE, params) != key
    changed = rows.copy()
    changed.loc[1, "sha256"] = "0" * 64
    assert cache_key(changed, TINY_BACKBONE, params) != key
    moved = rows.copy()
    moved.loc[2, "split"] = "test" if moved.loc[2, "split"] != "test" else "train"
    assert cache_key(moved, TINY_BACKBONE, params) != key
    bigger = TINY_BACKBONE.model_copy(update={"image_size": 48})
    assert cache_key(rows, bigger, params) != key
    assert cache_key(rows, TINY_BACKBONE, _params(tmp_path, flip_augment=False)) != key
    assert cache_key(rows, TINY_BACKBONE, _params(tmp_path, seed=1)) != key  # random weights follow the seed
    assert cache_key(rows, TINY_BACKBONE, _params(tmp_path, max_maps=3)) == key  # the figure is not in it


def test_weights_identity_hashes_a_file(tmp_path):
    first, second = tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    assert weights_identity(None) == "none" and weights_identity("imagenet") == "imagenet"
    assert weights_identity(str(first)).startswith("sha256:")
    assert weights_identity(str(first)) != weights_identity(str(second))


def test_usable_rows_skip_duplicates_and_need_columns(tmp_path, make_image):
    manifest = manifest_for(make_photos(tmp_path, make_image, n=4))
    assert len(usable_rows(manifest)) == len(manifest) - 1
    with pytest.raises(ManifestError, match="lacks column.*sha256.*data_ingestion"):
        usable_rows(manifest.drop(columns=["sha256"]))
    with pytest.raises(ManifestError, match="no train photos"):
        usable_rows(manifest[manifest.split != "train"])


def test_extraction_is_kept_and_reused_until_something_changes(tmp_path, make_image, caplog):
    photos = make_photos(tmp_path / "photos", make_image, n=3)
    manifest = manifest_for(photos, duplicate=False)
    params = _params(tmp_path, flip_augment=False)
    out, report = extract_features(manifest, TINY_BACKBONE, params)
    assert report["cached"] is False and out["train_features"].shape == (2, 1280)
    key = cache_key(usable_rows(manifest), TINY_BACKBONE, params)
    assert str(out["cache_key"][0]) == key
    kept = cache_file(params, key)
    assert kept.parent == tmp_path / "cache" and kept.is_file()

    # the same photos, labels, splits, backbone and weights: the kept arrays come back, not recomputed
    out2, report2 = extract_features(manifest, TINY_BACKBONE, params)
    assert report2["cached"] is True and report2["n_images"] == report["n_images"]
    assert set(out2) == set(out)
    np.testing.assert_array_equal(out2["train_features"], out["train_features"])

    # a changed label: another key, extracted again and kept beside the first
    relabelled = manifest.copy()
    relabelled.loc[relabelled.path == str(photos["bee"][2]), "label"] = "ant"
    out3, report3 = extract_features(relabelled, TINY_BACKBONE, params)
    assert report3["cached"] is False and list(out3["train_labels"]) == [0, 0]  # both train photos are ants now
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [kept.name, cache_file(params, str(out3["cache_key"][0])).name])

    # a changed backbone size: extracted again
    _, report4 = extract_features(manifest, TINY_BACKBONE.model_copy(update={"image_size": 40}), params)
    assert report4["cached"] is False

    # cache off: extracted again, nothing more kept
    n_kept = len(list((tmp_path / "cache").iterdir()))
    _, report5 = extract_features(manifest, TINY_BACKBONE, _params(tmp_path, flip_augment=False, cache=False))
    assert report5["cached"] is False and len(list((tmp_path / "cache").iterdir())) == n_kept

    # a kept file that is not an npz is ignored (and replaced), not an error
    kept.write_bytes(b"not an npz")
    _, report6 = extract_features(manifest, TINY_BACKBONE, params)
    assert report6["cached"] is False
    assert extract_features(manifest, TINY_BACKBONE, params)[1]["cached"] is True


def test_feature_map_figure_of_a_chosen_layer(tmp_path, make_image):
    from transfer_lab.models.backbones import BackboneError

    manifest = manifest_for(make_photos(tmp_path, make_image, n=3), duplicate=False)
    fig = feature_map_figure(manifest, TINY_BACKBONE, _params(tmp_path, feature_map_layer="block_3_expand_relu",
                                                              max_maps=4))
    assert len(fig.axes) >= 4
    with pytest.raises(BackboneError, match="feature_extraction.feature_map_layer.*pool|not a spatial map"):
        feature_map_figure(manifest, TINY_BACKBONE, _params(tmp_path, feature_map_layer="pool"))


def test_pipeline_extracts_caches_and_recomputes(tmp_path, make_image, kedro_project):
    photos = make_photos(tmp_path / "photos", make_image, n=5)
    manifest = manifest_for(photos)
    manifest.to_csv(kedro_project.out("data/03_primary/manifest.csv"), index=False)

    kedro_project.run("feature_extraction", TINY)
    feats = dict(np.load(kedro_project.out("data/04_feature/features.npz")))
    assert list(feats["class_names"]) == ["ant", "bee"]
    assert feats["train_features"].shape == (6, 1280)  # 3 train photos per class, the duplicate skipped
    assert feats["val_features"].shape == feats["test_features"].shape == (2, 1280)
    assert feats["train_features_flip"].shape == (6, 1280)
    assert list(feats["train_labels"]) == [0, 0, 0, 1, 1, 1]
    assert not any("_copy" in p for p in feats["train_paths"])
    report = json.loads(kedro_project.out("data/08_reporting/feature_extraction.json").read_text())
    assert report["cached"] is False and report["n_images"] == 10 and report["images_per_s"] > 0
    assert kedro_project.out("data/08_reporting/feature_maps.png").stat().st_size > 1000
    kept = list(kedro_project.out("data/04_feature/cache").iterdir())
    assert [p.name for p in kept] == [f"{feats['cache_key'][0]}.npz"]

    # Same manifest and backbone: the cache is reused, features unchanged.
    kedro_project.run("feature_extraction", TINY)
    again = dict(np.load(kedro_project.out("data/04_feature/features.npz")))
    np.testing.assert_array_equal(again["train_features"], feats["train_features"])
    assert json.loads(kedro_project.out("data/08_reporting/feature_extraction.json").read_text())["cached"] is True

    # Another split of the same photos: extracted again.
    manifest.loc[manifest.path == str(photos["ant"][2]), "split"] = "val"
    manifest.to_csv(kedro_project.out("data/03_primary/manifest.csv"), index=False)
    kedro_project.run("feature_extraction", TINY)
    third = dict(np.load(kedro_project.out("data/04_feature/features.npz")))
    assert json.loads(kedro_project.out("data/08_reporting/feature_extraction.json").read_text())["cached"] is False
    assert third["val_features"].shape == (3, 1280) and third["cache_key"][0] != feats["cache_key"][0]


def test_pipeline_refuses_a_misspelt_parameter_before_running(kedro_project):
    with pytest.raises(Exception, match=r"feature_extraction.batchsize is not a parameter.*Did you mean "
                                        r"feature_extraction.batch_size\?"):
        kedro_project.run("feature_extraction", {**TINY, "feature_extraction.batchsize": 3})
