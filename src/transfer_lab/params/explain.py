"""The ``explain`` parameters (conf/base/parameters_explain.yml): which model, which photos, which
saliency method, and how faithfulness is measured (:mod:`transfer_lab.models.explain`).

Whether ``layer`` or ``target`` exists needs the model: explain's first node checks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.choices import MODEL_HELP, ModelChoice, drop_nulls, lower, model_choice
from transfer_lab.params.fields import KeyedParams, TrueFalse, param

Method = Literal["gradcam_blurgrad", "gradcam", "integrated_gradients", "smoothgrad"]


@section("explain", conf_file="parameters_explain.yml")
class ExplainParams(KeyedParams):
    """Saliency maps for photos, saved as .npy + PNG overlay with an index, and their faithfulness
    (deletion test, sanity check). A key given ``null`` takes its default, except ``source``,
    ``target``, ``max_images`` and ``image_size`` (null: the test split, the predicted class, every
    photo, the backbone's size)."""

    model: ModelChoice = param("finetuned", f"Use {MODEL_HELP}", "head")
    source: str | None = param(None, "A photo or a folder of photos (searched recursively); null = the test split "
                                     "of the manifest (data_ingestion)", "/path/to/photos")
    method: Method = param("gradcam_blurgrad", "Use gradcam_blurgrad (Grad-CAM x gradient . (photo - blurred photo): "
                                               "passes the deletion test), gradcam, integrated_gradients or smoothgrad",
                           "integrated_gradients")
    layer: str = param("last_conv", "last_conv (the backbone's last convolutional layer) or the name of a "
                                    "convolutional layer of the model or its backbone (gradcam, gradcam_blurgrad)",
                       "block_13_expand_relu")
    target: Union[int, str, None] = param(None, "The class explained: null (each photo's predicted class), a class "
                                                "name or a class index of the model", "cat")
    max_images: int | None = param(8, "The most photos explained: a whole number, 1 or more, or null for all",
                                   8, ge=1)
    steps: int = param(32, "Integrated Gradients steps / SmoothGrad samples: a whole number, 1 or more", 16, ge=1)
    batch_size: int = param(16, "Images per gradient batch: a whole number, 1 or more", 8, ge=1)
    seed: int = param(42, "The random seed (photo sample, random pixels, SmoothGrad noise, randomised "
                          "weights): a whole number, 0 or more", 1, ge=0)
    image_size: int | None = param(None, "The imagenet model's input size in pixels, 32 or more; null = "
                                         "backbone.image_size", 224, ge=32)
    faithfulness: TrueFalse = param(True, "Measure the deletion test and the sanity check: true or false", False)
    deletion_fraction: float = param(0.2, "The share of pixels replaced by a blurred copy in the deletion test: "
                                          "above 0, below 1", 0.1, gt=0.0, lt=1.0, allow_inf_nan=False)
    sanity_blocks: int = param(2, "Backbone blocks (from the top) randomised with the head in the sanity check: "
                                  "a whole number, 0 or more", 3, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return drop_nulls(data, keep=("source", "target", "max_images", "image_size"))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return model_choice(value, "explain.model")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        value = lower(value)
        return {"ig": "integrated_gradients", "grad_cam": "gradcam", "grad-cam": "gradcam"}.get(value, value)

    @field_validator("source", mode="before")
    @classmethod
    def _existing(cls, value: Any) -> Any:
        if value is None or str(value).strip().lower() in ("", "null", "none"):
            return None
        path = Path(str(value).strip()).expanduser()
        if not path.exists():
            raise ValueError(f"explain.source={value}: no such photo or folder. Give a photo, a folder of photos, or "
                             "null for the test split, e.g. --params \"explain.source=/path/to/photos\".")
        return str(path.resolve())

    @field_validator("max_images", "image_size", mode="before")
    @classmethod
    def _null_words(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() in ("", "null", "none") else value

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none", "predicted")):
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        return value.strip() if isinstance(value, str) else value
