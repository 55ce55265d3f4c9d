"""The ``backbone`` parameters (conf/base/parameters_feature_extraction.yml): the network every
model of the project is built on, shared by all pipelines.

``BackboneParams`` has the attributes the old ``BackboneConfig`` had: ``name``, ``weights``,
``image_size``, ``alpha``, ``classifier_weights``, ``imagenet_labels``, and the properties
``spec`` (its :class:`~transfer_lab.models.backbone_registry.BackboneSpec`) and ``size`` (= ``image_size``).
The builders of :mod:`transfer_lab.models.backbones` take it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from transfer_lab.models.backbone_registry import BACKBONES, BackboneSpec
from transfer_lab.params.base import section
from transfer_lab.params.fields import KeyedParams, param

_NO_WEIGHTS = ("", "none", "null", "random")


def _backbone_key(name: Any) -> str:
    return str(name).strip().lower().replace("-", "_")


def _weights(key: str, value: Any, *, allow_none: bool, what: str) -> str | None:
    """``imagenet``, ``None`` (random; where allowed) or the path of an existing file."""
    if value is None or str(value).strip().lower() in _NO_WEIGHTS:
        if allow_none:
            return None
        raise ValueError(f"{key}={'null' if value is None else value} is not valid: use imagenet or the path of "
                         f"{what}. E.g. --params \"{key}=imagenet\".")
    text = str(value).strip()
    if text.lower() == "imagenet":
        return "imagenet"
    path = Path(text).expanduser()
    if not path.is_file():
        none = ", or 'none' for random weights" if allow_none else ""
        raise ValueError(f"{key}: weights file not found: {path}. Set {key} to an existing Keras weights file "
                         f"({what}), to 'imagenet' to download Keras's file{none}. "
                         f"E.g. --params \"{key}=../shared/weights/mobilenet_v2_1.0_imagenet"
                         f"{'_no_top' if allow_none else ''}.weights.h5\".")
    return str(path)


@section("backbone", conf_file="parameters_feature_extraction.yml")
class BackboneParams(KeyedParams):
    """The backbone: a keras.applications network, its weights and input size. ``image_size``
    ``null`` = the backbone's default (224); ``alpha`` ``null`` = 1.0."""

    name: str = param("mobilenet_v2", f"Use one of {', '.join(BACKBONES)}", "resnet50")
    weights: str | None = param("imagenet", "imagenet (Keras downloads its file into ~/.keras/models), none "
                                            "(random) or the path of a weights file without the top",
                                "../shared/weights/mobilenet_v2_1.0_imagenet_no_top.weights.h5")
    image_size: int = param(224, "The square input in pixels: a whole number, 32 or more (224 is the ImageNet "
                                 "size), or null for the backbone's default", 160, ge=32)
    resize: Literal["squash", "crop"] = param(
        "crop", "How a photo becomes the square input: crop (the centred square, aspect kept) or squash "
                "(the whole photo stretched); stored in classifier_config.json, so every pipeline and the "
                "served model decode the same way", "squash")
    alpha: float = param(1.0, "The width multiplier of the MobileNets (ignored by the others): above 0", 0.35,
                         gt=0.0, allow_inf_nan=False)
    classifier_weights: str = param("imagenet", "The 1000-class ImageNet model (visualization, adversarial): "
                                                "imagenet or the path of a weights file with the top",
                                    "../shared/weights/mobilenet_v2_1.0_imagenet.weights.h5")
    imagenet_labels: str | None = param(None, "One ImageNet class name a line (or Keras's "
                                              "imagenet_class_index.json); null = Keras's index file (online)",
                                        "../shared/weights/imagenet_labels.txt")

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_null(cls, data: Any) -> Any:
        """``null`` for ``image_size`` is the backbone's own size; for ``alpha``, 1.0."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("image_size") in (None, ""):
            spec = BACKBONES.get(_backbone_key(data.get("name") or "mobilenet_v2"))
            data["image_size"] = spec.default_size if spec else 224
        if "alpha" in data and data["alpha"] is None:
            data["alpha"] = 1.0
        for key in ("name", "classifier_weights"):
            if key in data and data[key] is None:
                del data[key]
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _known_backbone(cls, value: Any) -> Any:
        key = _backbone_key(value)
        if key not in BACKBONES:
            near = difflib.get_close_matches(key, list(BACKBONES), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ValueError(
                f"backbone.name={value} is not a known backbone.{hint} Known backbones: {', '.join(BACKBONES)}. "
                f"Set it with --params \"backbone.name={near[0] if near else 'mobilenet_v2'}\".")
        return key

    @field_validator("weights", mode="before")
    @classmethod
    def _backbone_weights(cls, value: Any) -> Any:
        return _weights("backbone.weights", value, allow_none=True,
                        what=".weights.h5 or .h5, made for this backbone without its top")

    @field_validator("classifier_weights", mode="before")
    @classmethod
    def _classifier_weights(cls, value: Any) -> Any:
        return _weights("backbone.classifier_weights", value, allow_none=False,
                        what=".weights.h5 or .h5, with its 1000-class top")

    @field_validator("image_size", mode="before")
    @classmethod
    def _whole_pixels(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"backbone.image_size={str(value).lower()} is not valid: it must be a whole number "
                             "of pixels, 32 or more. E.g. --params \"backbone.image_size=224\".")
        return value

    @field_validator("imagenet_labels", mode="before")
    @classmethod
    def _labels_file(cls, value: Any) -> Any:
        if value is None or str(value).strip() == "":
            return None
        path = Path(str(value).strip()).expanduser()
        if not path.is_file():
            raise ValueError(
                f"backbone.imagenet_labels: file not found: {path}. Set it to a text file with one class name a "
                "line, or to Keras's imagenet_class_index.json, or null for Keras's own (online). E.g. --params "
                "\"backbone.imagenet_labels=../shared/weights/imagenet_labels.txt\".")
        return str(path)

    @property
    def spec(self) -> BackboneSpec:
        """The registry entry of ``name`` (constructor, preprocessing, block pattern)."""
        return BACKBONES[self.name]

    @property
    def size(self) -> int:
        """The square input size in pixels (``image_size``)."""
        return int(self.image_size)
