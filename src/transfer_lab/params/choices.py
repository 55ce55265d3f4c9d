"""Values shared by several parameter groups: which classifier a pipeline works on, a second
ImageNet model (visualization.second_model, adversarial.transfer), lists given on the command line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from transfer_lab.params.fields import KeyedParams, param

#: Which classifier a pipeline uses: fine_tuning's (data/06_models/finetuned_classifier.keras),
#: head_training's (data/06_models/head_classifier.keras), or the backbone's own 1000-class
#: ImageNet model (backbone.name with backbone.classifier_weights).
ModelChoice = Literal["finetuned", "head", "imagenet"]
#: The trained classifiers only (evaluation scores a model trained on the photos' classes).
TrainedChoice = Literal["finetuned", "head"]

#: The pipeline that writes each trained classifier (for "run this first" messages).
WRITTEN_BY = {"finetuned": "fine_tuning", "head": "head_training"}

MODEL_HELP = ("finetuned (data/06_models/finetuned_classifier.keras, from fine_tuning), head "
              "(data/06_models/head_classifier.keras, from head_training) or imagenet (backbone.name with its "
              "1000-class top, backbone.classifier_weights)")

_NULL = ("", "none", "null")


def lower(value: Any) -> Any:
    """A choice written in any case (``Finetuned``) as its lower-case value."""
    return value.strip().lower() if isinstance(value, str) else value


def model_choice(value: Any, key: str) -> Any:
    """``<pipeline>.model`` in lower case; the old value ``classifier`` is refused with its new names."""
    value = lower(value)
    if value == "classifier":
        raise ValueError(f"{key}=classifier is the old name: the trained classifiers are now finetuned "
                         "(fine_tuning's, data/06_models/finetuned_classifier.keras) and head (head_training's, "
                         f"data/06_models/head_classifier.keras). E.g. --params \"{key}=finetuned\".")
    return value


def drop_nulls(data: Any, keep: tuple[str, ...] = ()) -> Any:
    """A mapping's keys given ``null`` take their defaults, except ``keep`` (where null means something)."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None or k in keep}
    return data


def is_null(value: Any) -> bool:
    """``None``, ``false`` or the words null / none / "" (what the command line gives for "skip")."""
    return value is None or value is False or (isinstance(value, str) and value.strip().lower() in _NULL)


def split_list(value: Any) -> Any:
    """A list given on the command line: ``--params "visualization.classes=zebra+tabby"`` (Kedro
    splits ``--params`` at commas, so ``+`` or ``;`` join the items); a single value is a list of one."""
    if isinstance(value, str) and any(sep in value for sep in ",;+"):
        return [v.strip() for v in re.split(r"[,;+]", value) if v.strip()]
    if value is None or isinstance(value, (list, tuple)):
        return value
    return [value]


class ImageNetModelParams(KeyedParams):
    """A second, different keras.applications network with its 1000-class ImageNet top: does it see
    the same thing? Subclasses set ``where`` (``visualization.second_model``, ``adversarial.transfer``)."""

    name: str = param("mobilenet", "A keras.applications backbone, e.g. mobilenet, mobilenet_v2, resnet50",
                      "mobilenet")
    alpha: float = param(1.0, "The width multiplier of the MobileNets: above 0", 0.25, gt=0.0, allow_inf_nan=False)
    weights: str | None = param("imagenet", "imagenet (Keras download), none (random) or the path of a Keras "
                                            "weights file with the 1000-class top",
                                "../shared/weights/mobilenet_0.25_imagenet.weights.h5")
    labels: str | None = param(None, "One ImageNet class name a line; null = backbone.imagenet_labels",
                               "../shared/weights/imagenet_labels.txt")
    image_size: int | None = param(None, "Its input size in pixels, 32 or more; null = the input size of the "
                                         "model it is compared with", 224, ge=32)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return drop_nulls(data, keep=("weights", "labels", "image_size"))

    @field_validator("name", mode="before")
    @classmethod
    def _known_backbone(cls, value: Any) -> Any:
        from transfer_lab.models.backbones import BACKBONES, get_spec

        try:
            return get_spec(value).name
        except ValueError:
            import difflib

            near = difflib.get_close_matches(str(value).strip().lower(), list(BACKBONES), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"{cls.where}.name={value} is not a known backbone.{hint} Known backbones: "
                             f"{', '.join(BACKBONES)}. E.g. --params \"{cls.where}.name=mobilenet\".") from None

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_file(cls, value: Any) -> Any:
        if value is None or str(value).strip().lower() in (*_NULL, "random"):
            return None
        text = str(value).strip()
        if text.lower() == "imagenet":
            return "imagenet"
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(
                f"{cls.where}.weights: file not found: {path}. Give a Keras weights file of the network with its "
                "1000-class top (e.g. ../shared/weights/mobilenet_0.25_imagenet.weights.h5), 'imagenet' to "
                f"download it, or set {cls.where}=null to skip it. E.g. --params \"{cls.where}.weights="
                "../shared/weights/mobilenet_0.25_imagenet.weights.h5\".")
        return str(path)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_file(cls, value: Any) -> Any:
        if value is None or str(value).strip() == "":
            return None
        path = Path(str(value).strip()).expanduser()
        if not path.is_file():
            raise ValueError(f"{cls.where}.labels: file not found: {path}. Give a text file with one ImageNet class "
                             f"name a line, or null for backbone.imagenet_labels. E.g. --params \"{cls.where}.labels="
                             "../shared/weights/imagenet_labels.txt\".")
        return str(path)

    def describe(self) -> str:
        return f"{self.name} alpha={self.alpha:g} (ImageNet)"
