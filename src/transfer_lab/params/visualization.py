"""The ``visualization`` parameters (conf/base/parameters_visualization.yml): which model, which
classes, how an "ideal" image is optimised (:class:`transfer_lab.models.ideal.IdealConfig`), a
second ImageNet model that checks it, and the feature maps of one photo.

Whether a class or a layer exists needs the model: visualization's first node resolves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.choices import (
    MODEL_HELP, ImageNetModelParams, ModelChoice, drop_nulls, is_null, lower, model_choice, split_list,
)
from transfer_lab.params.fields import KeyedParams, TrueFalse, param

_CONF = "parameters_visualization.yml"


class RegularizerParams(KeyedParams):
    """``visualization.regularizers``: the weight of each penalty (0 = off)."""

    where: ClassVar[str] = "visualization.regularizers"
    conf_file: ClassVar[str | None] = _CONF

    total_variation: float = param(1.5, "The weight of the total variation (0-255 units per pixel): 0 (off) or "
                                        "more", 1.0, ge=0.0, allow_inf_nan=False)
    l2: float = param(0.0, "The weight of the L2 distance from mid-grey: 0 (off) or more", 0.1, ge=0.0,
                      allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return {k: (0.0 if v is None else v) for k, v in data.items()} if isinstance(data, dict) else data


class TransformParams(KeyedParams):
    """``visualization.transforms``: random changes each step that make the image hold up."""

    where: ClassVar[str] = "visualization.transforms"
    conf_file: ClassVar[str | None] = _CONF

    jitter: int = param(24, "The largest shift in pixels: a whole number, 0 (off) or more", 4, ge=0)
    scale: tuple[float, float] = param((0.6, 1.4), "The zoom range [low, high] with 0 < low <= high (one number s: "
                                                   "[1/s, s])", "[0.95, 1.05]")
    rotate: float = param(25.0, "The largest rotation in degrees either way: 0 (off) or more", 5, ge=0.0,
                          allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        off = {"jitter": 0, "scale": (1.0, 1.0), "rotate": 0.0}
        return {k: (off.get(k, v) if v is None else v) for k, v in data.items()}

    @field_validator("scale", mode="before")
    @classmethod
    def _range(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            s = float(value)
            if s <= 0:
                value = [s, s]  # refused below
            else:
                value = [1.0 / s, s] if s >= 1 else [s, 1.0 / s]
        if isinstance(value, (list, tuple)) and len(value) == 2:
            try:
                low, high = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                low, high = 0.0, -1.0
            if 0 < low <= high:
                return (low, high)
        raise ValueError(f"visualization.transforms.scale={value} is not valid: it must be [low, high] with "
                         "0 < low <= high. E.g. --params \"visualization.transforms.scale=[0.9,1.1]\".")


class SecondModelParams(ImageNetModelParams):
    """``visualization.second_model``: a second ImageNet model; does it see the same class in the
    ideal image? ``class_map`` maps a class of the visualised model to ImageNet class name(s)."""

    where: ClassVar[str] = "visualization.second_model"
    conf_file: ClassVar[str | None] = _CONF

    class_map: dict[str, Union[str, int, list[Union[str, int]]]] = param(
        {}, "A mapping from a class of the model to ImageNet class name(s), e.g. {Abyssinian: cat, beagle: beagle}",
        "{Abyssinian: cat}")

    @field_validator("class_map", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"visualization.second_model.class_map={value} is not valid: it must map a class of the "
                             "model to ImageNet class name(s), e.g. {cat: [tabby, tiger_cat]}.")
        return {str(k): v for k, v in value.items()}


class FeatureMapParams(KeyedParams):
    """``visualization.feature_maps``: the most active channels of chosen layers for one photo."""

    where: ClassVar[str] = "visualization.feature_maps"
    conf_file: ClassVar[str | None] = _CONF

    image: str | None = param("auto", "A photo path, auto (the first test photo of the manifest) or null (skip)",
                              "../shared/data/PetImages/Cat/1.jpg")
    layers: list[str] = param(["block_1_expand_relu", "block_6_expand_relu", "last_conv"],
                              "Backbone layer names, or last_conv (joined with + on the command line)",
                              "block_6_expand_relu+last_conv", min_length=1)
    max_maps: int = param(32, "Channels shown per layer: a whole number, 1 or more", 16, ge=1)
    channel_images: int = param(4, "Ideal images of the layer's most active channels, beside their maps: a whole "
                                   "number, 0 (none) or more", 2, ge=0)
    channel_steps: int | None = param(None, "Adam steps per channel image: a whole number, 1 or more; null = "
                                            "visualization.steps / 3", 48, ge=1)
    channel_batch: int = param(1, "Transformed copies of each channel image per step: a whole number, 1 or more "
                                  "(visualization.batch is the class images' count)", 2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return drop_nulls(data, keep=("image",))

    @field_validator("image", mode="before")
    @classmethod
    def _photo(cls, value: Any) -> Any:
        if is_null(value):
            return None
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        photo = Path(text).expanduser()
        if not photo.is_file():
            raise ValueError(f"visualization.feature_maps.image: photo not found: {photo}. Give a photo path, auto "
                             "(the first test photo) or null to skip the feature maps. E.g. --params "
                             "\"visualization.feature_maps.image=null\".")
        return str(photo)

    @field_validator("layers", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        value = split_list(value)
        return [str(v).strip() for v in value] if isinstance(value, list) else value


@section("visualization", conf_file=_CONF)
class VisualizationParams(KeyedParams):
    """Ideal class images by gradient ascent on a class's pre-softmax score, checked by a second
    model, and feature maps of one photo. A key given ``null`` takes its default, except
    ``image_size``, ``second_model`` and ``feature_maps`` (null: the backbone's size, skip, skip)."""

    model: ModelChoice = param("finetuned", f"Use {MODEL_HELP}", "imagenet")
    classes: list[Union[int, str]] = param(
        ["cat", "dog"], "A class name or index of the model, a group (cat, dog) or a list; on the command line "
                        "join them with + (zebra+tabby)", "zebra+tabby", min_length=1)
    image_size: int | None = param(None, "The imagenet model's input size in pixels, 32 or more; null = "
                                         "backbone.image_size", 224, ge=32)
    steps: int = param(128, "Adam steps per image: a whole number, 1 or more", 256, ge=1)
    learning_rate: float = param(0.05, "Above 0: about 0.05 for fourier, 0.5-2 for pixel", 0.05, gt=0.0,
                                 allow_inf_nan=False)
    seed: int = param(42, "The random seed: a whole number, 0 or more", 1, ge=0)
    parameterization: Literal["fourier", "pixel"] = param("fourier", "Use fourier or pixel", "pixel")
    decorrelate_colour: TrueFalse = param(True, "Optimise in ImageNet's de-correlated colour space: true or false",
                                          False)
    regularizers: RegularizerParams = RegularizerParams()
    transforms: TransformParams = TransformParams()
    octaves: int = param(1, "A whole number, 1 or more (and at most steps)", 2, ge=1)
    octave_scale: float = param(1.4, "The size ratio between octaves: 1 or more", 1.4, ge=1.0, allow_inf_nan=False)
    batch: int = param(2, "Transformed copies per step: a whole number, 1 or more", 3, ge=1)
    objective: Literal["logit", "logit_minus_mean"] = param(
        "logit_minus_mean", "Use logit or logit_minus_mean (the class's logit minus the mean logit)", "logit")
    blur_every: int = param(4, "Blur the image every this many steps: a whole number, 0 (never) or more", 4, ge=0)
    blur_sigma: float = param(0.5, "The blur's Gaussian sigma in pixels: above 0", 0.5, gt=0.0, allow_inf_nan=False)
    n_images: int = param(3, "Distinct images per class: a whole number, 1 or more", 1, ge=1)
    diversity: float = param(5.0, "The weight of the Gram-matrix similarity between a class's images: 0 (off) or "
                                  "more", 0.5, ge=0.0, allow_inf_nan=False)
    diversity_layer: str = param("auto", "The layer whose Gram matrices are compared: a layer name, or auto (the "
                                         "backbone's middle spatial layer)", "block_6_expand_relu")
    natural_pool: int = param(200, "Training photos scored for the natural examples: a whole number, 0 (none) or "
                                   "more", 100, ge=0)
    natural_top: int = param(8, "Natural examples shown per class: a whole number, 0 (none) or more", 4, ge=0)
    compare_unsmoothed: TrueFalse = param(False, "Also run each class without TV/L2: true or false", True)
    second_model: SecondModelParams | None = SecondModelParams(name="mobilenet", alpha=0.25)
    feature_maps: FeatureMapParams | None = FeatureMapParams()

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        data = drop_nulls(data, keep=("image_size", "second_model", "feature_maps"))
        if isinstance(data, dict):
            data = dict(data)
            for key in ("second_model", "feature_maps"):
                if key in data and is_null(data[key]):
                    data[key] = None
            if "regularizers" in data and is_null(data["regularizers"]):
                data["regularizers"] = {"total_variation": 0.0, "l2": 0.0}
            if "transforms" in data and is_null(data["transforms"]):
                data["transforms"] = {"jitter": 0, "scale": None, "rotate": 0}
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return model_choice(value, "visualization.model")

    @field_validator("parameterization", "objective", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return lower(value)

    @field_validator("classes", mode="before")
    @classmethod
    def _class_list(cls, value: Any) -> Any:
        value = split_list(value)
        if not value:
            raise ValueError("visualization.classes is empty: name one class or a list, e.g. --params "
                             "\"visualization.classes=zebra\" (a class name or index of the model chosen by "
                             "visualization.model).")
        return [v.strip() if isinstance(v, str) else v for v in value]

    @model_validator(mode="after")
    def _octaves_fit(self) -> "VisualizationParams":
        if self.octaves > self.steps:
            raise ValueError(f"visualization.octaves={self.octaves} cannot exceed visualization.steps={self.steps}: "
                             "each octave needs at least one step. E.g. --params \"visualization.octaves=1\".")
        return self

    def ideal_config(self) -> Any:
        """The optimisation's settings (:class:`transfer_lab.models.ideal.IdealConfig`)."""
        from transfer_lab.models.ideal import IdealConfig

        return IdealConfig(
            steps=self.steps, learning_rate=self.learning_rate, seed=self.seed, parameterization=self.parameterization,
            decorrelate_colour=self.decorrelate_colour,
            regularizers={"total_variation": self.regularizers.total_variation, "l2": self.regularizers.l2},
            jitter=self.transforms.jitter, scale=tuple(self.transforms.scale), rotate=self.transforms.rotate,
            octaves=self.octaves, octave_scale=self.octave_scale, batch=self.batch, objective=self.objective,
            blur_every=self.blur_every, blur_sigma=self.blur_sigma, n_images=self.n_images, diversity=self.diversity,
        )
