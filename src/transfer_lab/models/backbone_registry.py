"""The backbone registry: the keras.applications networks the project builds on, by name.

It imports nothing of the project, so both the ``backbone`` parameters
(:mod:`transfer_lab.params.backbone`) and the builders (:mod:`transfer_lab.models.backbones`) use it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    constructor: str  # attribute of keras.applications
    preprocessing: str  # tf | caffe | none
    default_size: int
    block_pattern: str  # regex whose group(1) names a layer's block, for fine-tuning
    has_alpha: bool = False
    weights_file: Callable[[float, int, bool], str] = field(default=lambda a, s, top: "", repr=False)

    def keras_constructor(self) -> Callable[..., Any]:
        import keras

        return getattr(keras.applications, self.constructor)


def _alpha_text(alpha: float) -> str:
    return {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(float(alpha), str(alpha))


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "vgg16", "VGG16", "caffe", 224, r"^(block\d+)_",
            weights_file=lambda a, s, top: "vgg16_weights_tf_dim_ordering_tf_kernels" + ("" if top else "_notop") + ".h5",
        ),
        BackboneSpec(
            "vgg19", "VGG19", "caffe", 224, r"^(block\d+)_",
            weights_file=lambda a, s, top: "vgg19_weights_tf_dim_ordering_tf_kernels" + ("" if top else "_notop") + ".h5",
        ),
        BackboneSpec(
            "resnet50", "ResNet50", "caffe", 224, r"^(conv\d_block\d+|conv1|pool1)_",
            weights_file=lambda a, s, top: "resnet50_weights_tf_dim_ordering_tf_kernels" + ("" if top else "_notop") + ".h5",
        ),
        BackboneSpec(
            "resnet50_v2", "ResNet50V2", "tf", 224, r"^(conv\d_block\d+|conv1|pool1|post)_",
            weights_file=lambda a, s, top: "resnet50v2_weights_tf_dim_ordering_tf_kernels" + ("" if top else "_notop") + ".h5",
        ),
        BackboneSpec(
            "mobilenet", "MobileNet", "tf", 224, r"^(conv1|conv_(?:dw|pw)_\d+|conv_pad_\d+)",
            has_alpha=True,
            weights_file=lambda a, s, top: f"mobilenet_{_alpha_text(a)}_{s}_tf" + ("" if top else "_no_top") + ".h5",
        ),
        BackboneSpec(
            "mobilenet_v2", "MobileNetV2", "tf", 224, r"^(block_\d+|Conv1|expanded_conv|Conv_1)",
            has_alpha=True,
            weights_file=lambda a, s, top: f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(a)}_{s}"
            + ("" if top else "_no_top") + ".h5",
        ),
        BackboneSpec(
            "mobilenet_v3_small", "MobileNetV3Small", "none", 224, r"^(expanded_conv(?:_\d+)?|conv(?:_1)?)[_/]?",
            has_alpha=True,
            weights_file=lambda a, s, top: f"weights_mobilenet_v3_small_224_{float(a)}_float"
            + ("" if top else "_no_top") + "_v2.h5",
        ),
        BackboneSpec(
            "mobilenet_v3_large", "MobileNetV3Large", "none", 224, r"^(expanded_conv(?:_\d+)?|conv(?:_1)?)[_/]?",
            has_alpha=True,
            weights_file=lambda a, s, top: f"weights_mobilenet_v3_large_224_{float(a)}_float"
            + ("" if top else "_no_top") + "_v2.h5",
        ),
        BackboneSpec(
            "efficientnet_b0", "EfficientNetB0", "none", 224, r"^(stem|block\d[a-z]|top)_",
            weights_file=lambda a, s, top: "efficientnetb0" + ("" if top else "_notop") + ".h5",
        ),
    )
}


class BackboneError(ValueError):
    """A backbone that cannot be built as asked; the message says what to change."""


def get_spec(name: str) -> BackboneSpec:
    key = str(name).strip().lower().replace("-", "_")
    if key not in BACKBONES:
        near = difflib.get_close_matches(key, BACKBONES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise BackboneError(
            f"Unknown backbone.name '{name}'.{hint} Known backbones: {', '.join(BACKBONES)}. "
            f"Set it with --params backbone.name=<one of these>."
        )
    return BACKBONES[key]
