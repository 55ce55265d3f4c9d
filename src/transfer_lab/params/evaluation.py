"""The ``evaluation`` parameters (conf/base/parameters_evaluation.yml): which trained classifier
to score on a folder of new photos, and how the folder is read.

``evaluation.source`` may be null here (``kedro run`` validates every pipeline's parameters,
and evaluation is only run on photos the user brings); evaluation's first node fails at once
when it is not set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.choices import TrainedChoice, drop_nulls, lower, model_choice
from transfer_lab.params.fields import KeyedParams, param

#: evaluation.layout values (transfer_lab.data.layouts.LAYOUTS)
Layout = Literal["auto", "oxford_pets", "pet_images", "folders", "unlabelled"]


@section("evaluation", conf_file="parameters_evaluation.yml")
class EvaluationParams(KeyedParams):
    """Score a trained classifier on a folder of photos in any layout data_ingestion reads. A key
    given ``null`` takes its default (``source`` stays null: not set)."""

    model: TrainedChoice = param("finetuned", "Use finetuned (data/06_models/finetuned_classifier.keras, from "
                                              "fine_tuning) or head (data/06_models/head_classifier.keras, from "
                                              "head_training)", "head")
    source: str | None = param(None, "An existing folder of photos to score", "/path/to/photos")
    layout: Layout = param("auto", "Use one of auto, oxford_pets, pet_images, folders, unlabelled", "unlabelled")
    labels: Literal["auto", "breed", "species"] = param(
        "auto", "Use auto (what the model was trained on: species for a cat/dog model, else breed), breed or "
                "species", "species")
    batch_size: int = param(32, "Photos per prediction batch: a whole number, 1 or more", 64, ge=1)
    n_worst: int = param(16, "Photos in the worst-mistakes gallery: a whole number, 0 or more", 8, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return drop_nulls(data, keep=("source",))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return model_choice(value, "evaluation.model")

    @field_validator("layout", "labels", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return lower(value)

    @field_validator("source", mode="before")
    @classmethod
    def _existing_folder(cls, value: Any) -> Any:
        if value is None or str(value).strip() == "":
            return None
        root = Path(str(value).strip()).expanduser()
        if not root.is_dir():
            raise ValueError(f"evaluation.source={value}: no such folder. Give an existing folder of photos, e.g. "
                             "--params \"evaluation.source=/path/to/photos,evaluation.layout=auto\".")
        return str(root.resolve())
