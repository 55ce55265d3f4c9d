"""The ``inference`` and ``unfamiliar`` parameters (conf/base/parameters_inference.yml).

``inference``: photos (a file, a folder, or a CSV of base64 image bytes) -> the chosen classifier
-> data/07_model_output/predictions.csv, and the serving model logged by the serving pipeline (after
fine_tuning in `kedro run`).
``unfamiliar``: the "unfamiliar photo" statistics fitted on head_training's features (models.unfamiliar).
``inference.source`` may be null here (``kedro run`` validates every pipeline's parameters); the
inference pipeline's first node fails at once when it is not set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.choices import TrainedChoice, drop_nulls, lower, model_choice
from transfer_lab.params.fields import KeyedParams, TrueFalse, param


@section("inference", conf_file="parameters_inference.yml")
class InferenceParams(KeyedParams):
    """Label photos with a trained classifier, and how the serving model is logged."""

    model: TrainedChoice = param("finetuned", "Use head (data/06_models/head_classifier.keras, from head_training) or "
                                         "finetuned (data/06_models/finetuned_classifier.keras, from fine_tuning)",
                                 "finetuned")
    source: str | None = param(None, "An image file, a folder of images, or a .csv with an `image` column of "
                                     "base64-encoded image bytes", "/path/to/photos")
    top_k: int = param(3, "Classes listed per photo (top-k): a whole number, 1 or more", 5, ge=1)
    batch_size: int = param(32, "Photos per prediction batch: a whole number, 1 or more", 64, ge=1)
    max_pixels: int | None = param(None, "Larger images are refused (too_large); null = data.max_pixels: a whole "
                                         "number of pixels, 1 or more", 40_000_000, ge=1)
    log_model: TrueFalse = param(True, "Log the serving model (decoder + classifier + unfamiliar flag) at the end "
                                      "of training (the serving pipeline) and register it: true or false", False)
    registered_model_name: str | None = param(
        None, "The Model Registry name; null = transfer-lab-<data set>-<labels> (the MLflow experiment's name)",
        "transfer-lab-PetImages-species")

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return drop_nulls(data, keep=("source", "max_pixels", "registered_model_name"))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return model_choice(value, "inference.model")

    @field_validator("source", mode="before")
    @classmethod
    def _existing(cls, value: Any) -> Any:
        if value is None or str(value).strip() == "":
            return None
        path = Path(str(value).strip()).expanduser()
        if not path.exists():
            raise ValueError(f"inference.source={value}: no such file or folder. Give an image, a folder of images "
                             "or a .csv of base64 images, e.g. --params \"inference.source=/path/to/photos\".")
        return str(path.resolve())


@section("unfamiliar", conf_file="parameters_inference.yml")
class UnfamiliarParams(KeyedParams):
    """The unfamiliar-photo flag: fitted on the training photos' features, threshold set on validation."""

    method: Literal["knn", "mahalanobis", "msp", "energy"] = param(
        "knn", "Use knn (distance to the k-th nearest training features), mahalanobis, msp (max softmax) or energy",
        "mahalanobis")
    k: int = param(20, "Neighbours for method=knn: a whole number, 1 or more", 10, ge=1)
    max_flagged: float = param(0.01, "Share of validation photos flagged at most, above 0 and below 1 (<= 0.05)",
                               0.02, gt=0, lt=1)
    seed: int = param(0, "Seed of the training-feature sample when there are more than 20,000: a whole number", 1)

    @field_validator("method", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return lower(value)
