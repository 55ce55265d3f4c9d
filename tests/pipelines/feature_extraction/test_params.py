"""The ``backbone`` and ``feature_extraction`` parameters: every rule, its message, the YAML's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from transfer_lab.models.backbones import BACKBONES
from transfer_lab.params import SECTIONS
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.feature_extraction import FeatureExtractionParams

CONF = yaml.safe_load((Path(__file__).resolve().parents[3] / "conf" / "base" /
                       "parameters_feature_extraction.yml").read_text())


def test_registered_and_defaults_are_the_yaml():
    assert SECTIONS["backbone"] is BackboneParams and SECTIONS["feature_extraction"] is FeatureExtractionParams
    assert BackboneParams().model_dump() == CONF["backbone"]
    assert FeatureExtractionParams().model_dump() == CONF["feature_extraction"]


def test_backbone_attributes_for_the_builders(tmp_path):
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"x")
    b = BackboneParams.model_validate({"name": "MobileNet-V2", "weights": str(weights), "image_size": None,
                                       "alpha": "0.35"})
    assert (b.name, b.weights, b.image_size, b.size, b.alpha) == ("mobilenet_v2", str(weights), 224, 224, 0.35)
    assert b.spec is BACKBONES["mobilenet_v2"] and b.classifier_weights == "imagenet" and b.imagenet_labels is None
    for none in ("none", "None", None, "random"):
        assert BackboneParams(weights=none).weights is None


@pytest.mark.parametrize(
    "change,message",
    [
        ({"name": "mobilenet_v9"}, r"backbone.name=mobilenet_v9 is not a known backbone\. Did you mean mobilenet_v2.*"
                                   r"Known backbones: .*efficientnet_b0"),
        ({"name": "inception"}, r"backbone.name=inception is not a known backbone\. Known backbones: vgg16"),
        ({"weights": "/no/such.weights.h5"}, r"backbone.weights: weights file not found: /no/such.weights.h5.*'none'"),
        ({"classifier_weights": "none"}, r"backbone.classifier_weights=none is not valid: use imagenet or the path"),
        ({"classifier_weights": "/no/top.h5"}, r"backbone.classifier_weights: weights file not found"),
        ({"imagenet_labels": "/no/labels.txt"}, r"backbone.imagenet_labels: file not found"),
        ({"image_size": 16}, r"backbone.image_size=16 is not valid: .*32 or more"),
        ({"image_size": 100.5}, r"backbone.image_size=100.5 is not valid"),
        ({"image_size": True}, r"backbone.image_size=true is not valid: it must be a whole number"),
        ({"alpha": 0}, r"backbone.alpha=0 is not valid: .*above 0"),
        ({"nmae": "vgg16"}, r"backbone.nmae is not a parameter\. Did you mean backbone.name\?"),
    ],
)
def test_backbone_refuses_wrong_values_naming_the_key(change, message):
    with pytest.raises(ValidationError, match=message):
        BackboneParams.model_validate(change)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"batch_size": 0}, r"feature_extraction.batch_size=0 is not valid: use auto or a whole number"),
        ({"batch_size": "big"}, r"feature_extraction.batch_size='big' is not valid"),
        ({"batch_size": True}, r"feature_extraction.batch_size=True is not valid"),
        ({"flip_augment": "yes"}, r"feature_extraction.flip_augment=yes is not valid: must be true or false"),
        ({"cache": 1}, r"feature_extraction.cache=1 is not valid"),
        ({"max_maps": 0}, r"feature_extraction.max_maps=0 is not valid"),
        ({"feature_map_image": "/no/photo.jpg"}, r"feature_extraction.feature_map_image: no such file /no/photo.jpg"),
        ({"batchsize": 3}, r"feature_extraction.batchsize is not a parameter\. Did you mean feature_extraction.batch_size\?"),
        ({"cache_key": 3}, r"feature_extraction.cache_key is not a parameter\.( Did you mean .*)? Known in "
                           r"feature_extraction: batch_size, cache, cache_dir"),
    ],
)
def test_feature_extraction_refuses_wrong_values_naming_the_key(change, message):
    with pytest.raises(ValidationError, match=message):
        FeatureExtractionParams.model_validate(change)


def test_feature_extraction_command_line_values(tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"x")
    p = FeatureExtractionParams.model_validate({"batch_size": "16", "cache": "false", "flip_augment": "True",
                                                "feature_map_image": str(photo), "feature_map_layer": None,
                                                "max_maps": "8"})
    assert (p.batch_size, p.cache, p.flip_augment, p.feature_map_image, p.feature_map_layer, p.max_maps) == (
        16, False, True, str(photo), "last_conv", 8)
    assert FeatureExtractionParams(batch_size="AUTO").batch_size == "auto"
