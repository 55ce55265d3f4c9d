"""The ``export`` parameters (conf/base/parameters_export.yml): which classifier to export as a
SavedModel and TFLite (float32, int8), and how parity and latency are measured."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from transfer_lab.params.base import section
from transfer_lab.params.choices import TrainedChoice, model_choice
from transfer_lab.params.fields import KeyedParams, TrueFalse, param


@section("export", conf_file="parameters_export.yml")
class ExportParams(KeyedParams):
    """SavedModel + TFLite export of a trained classifier, with parity on the test photos."""

    model: TrainedChoice = param("head", "Use head (head_training's classifier) or finetuned (fine_tuning's)",
                                 "finetuned")
    int8: TrueFalse = param(True, "Also export TFLite int8 (calibrated on training photos): true or false", False)
    calibration_photos: int = param(100, "Training photos that calibrate int8: a whole number, 1 or more", 200, ge=1)
    test_photos: int = param(300, "Test photos for the parity figures: a whole number, 1 or more", 100, ge=1)
    latency_repeats: int = param(20, "Timed single-photo runs (median reported): a whole number, 1 or more", 50,
                                 ge=1)

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return model_choice(value, "export.model")
