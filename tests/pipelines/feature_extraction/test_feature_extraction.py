"""feature_extraction: parameters, cache key, the pipeline in-process (tiny random-weight model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transfer_lab.models.backbones import BackboneError
from transfer_lab.pipelines.feature_extraction.nodes import (
    FeatureExtractionError,
    cache_key,
    usable_rows,
    validate_parameters,
)

from .tiny import make_photos, manifest_for

TINY = {"backbone.name": "mobilenet_v2", "backbone.weights": "none", "backbone.image_size": 32,
        "backbone.alpha": 0.35, "feature_extraction.batch_size": 4}


def _config(**over):
    params = {"batch_size": 4, **over}
    return validate_parameters({"name": "mobilenet_v2", "weights": "none", "image_size": 32, "alpha": 0.35}, params)


def test_bad_parameters_name_the_parameter(tmp_path):
    with pytest.raises(FeatureExtractionError, match="feature_extraction.batch_size"):
        _config(batch_size=0)
    with pytest.raises(FeatureExtractionError, match="feature_extraction.feature_map_image"):
        _config(feature_map_image=str(tmp_path / "nope.jpg"))
    with pytest.raises(FeatureExtractionError, match="Unknown feature_extraction parameter"):
        _config(batchsize=3)
    with pytest.raises(BackboneError, match="Known backbones: .*efficientnet_b0"):
        validate_parameters({"name": "mobilenet_v9"}, {})
    with pytest.raises(BackboneError, match="backbone.weights"):
        validate_parameters({"weights": str(tmp_path / "missing.weights.h5")}, {})


def test_cache_key_follows_photos_labels_and_backbone(tmp_path, make_image):
    rows = usable_rows(manifest_for(make_photos(tmp_path, make_image, n=4)))
    cfg = _config()
    key = cache_key(rows, cfg)
    assert key == cache_key(rows.copy(), _config())
    relabelled = rows.copy()
    relabelled.loc[0, "label"] = "bee"
    assert cache_key(relabelled, cfg) != key
    changed = rows.copy()
    changed.loc[1, "sha256"] = "0" * 64
    assert cache_key(changed, cfg) != key
    bigger = validate_parameters({"name": "mobilenet_v2", "weights": "none", "image_size": 48, "alpha": 0.35},
                                 {"batch_size": 4})
    assert cache_key(rows, bigger) != key
    assert cache_key(rows, _config(flip_augment=False)) != key


def test_usable_rows_skip_duplicates_and_need_columns(tmp_path, make_image):
    manifest = manifest_for(make_photos(tmp_path, make_image, n=4))
    assert len(usable_rows(manifest)) == len(manifest) - 1
    with pytest.raises(FeatureExtractionError, match="sha256"):
        usable_rows(manifest.drop(columns=["sha256"]))


def test_pipeline_extracts_caches_and_recomputes(tmp_path, make_image, kedro_project, caplog):
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

    # Same manifest and backbone: the cache is reused, features unchanged.
    kedro_project.run("feature_extraction", TINY)
    again = dict(np.load(kedro_project.out("data/04_feature/features.npz")))
    np.testing.assert_array_equal(again["train_features"], feats["train_features"])
    assert json.loads(kedro_project.out("data/08_reporting/feature_extraction.json").read_text())["cached"] is True


def test_stale_cache_is_recomputed(tmp_path, make_image):
    from transfer_lab.pipelines.feature_extraction.nodes import extract_features

    manifest = manifest_for(make_photos(tmp_path, make_image, n=3), duplicate=False)
    config = _config(flip_augment=False)
    stale = {"cache_key": np.asarray(["something else"]), "train_features": np.zeros((2, 1280), np.float32)}
    out, report = extract_features(manifest, config, stale)
    assert report["cached"] is False and out["train_features"].shape == (2, 1280)
    assert str(out["cache_key"][0]) == cache_key(usable_rows(manifest), config)
    # the same key as stored: nothing recomputed, the stored arrays come back
    out2, report2 = extract_features(manifest, config, out)
    assert report2["cached"] is True and out2 is out
