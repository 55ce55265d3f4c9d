"""The ``runtime`` parameters (conf/base/parameters_runtime.yml): distribution strategy, mixed
precision, XLA and logical CPU devices (transfer_lab.runtime.strategy.setup_runtime)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from transfer_lab.params.base import section
from transfer_lab.params.fields import AutoTrueFalse, KeyedParams, param

STRATEGIES = ("auto", "mirrored", "multi_worker", "none")
PRECISIONS = ("auto", "on", "off", "float32", "mixed_float16", "mixed_bfloat16")
#: other spellings of strategy "none"
_ONE_DEVICE = ("default", "one_device", "off", "false")


@section("runtime", conf_file="parameters_runtime.yml")
class RuntimeParams(KeyedParams):
    """How the work runs. ``strategy`` ``default``, ``one_device``, ``off`` and ``false`` mean
    ``none``; ``mixed_precision`` ``true``/``false`` mean ``on``/``off``; ``null`` means ``auto``."""

    strategy: Literal["auto", "mirrored", "multi_worker", "none"] = param(
        "auto", "Use one of auto, mirrored, multi_worker, none", "mirrored")
    mixed_precision: Literal["auto", "on", "off", "float32", "mixed_float16", "mixed_bfloat16"] = param(
        "auto", "Use auto, on, off (or a Keras policy: float32, mixed_float16, mixed_bfloat16)", "on")
    jit_compile: AutoTrueFalse = param("auto", "XLA for training: auto, true or false", False)
    cpu_devices: int | None = param(None, "Logical CPU devices: a whole number, 1 or more, or null (leave "
                                          "TensorFlow's devices as they are)", 2, ge=1)
    pixel_cache: str | None = param(
        "data/04_feature/pixels", "A folder for the decoded photos (transfer_lab.data.pixels), or null to decode "
        "the photo files every time", "data/04_feature/pixels")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_alias(cls, value: Any) -> Any:
        if value is None or value == "":
            return "auto"
        if value is False:
            return "none"
        if isinstance(value, str):
            text = value.strip().lower().replace("-", "_")
            return "none" if text in _ONE_DEVICE else text
        return value

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision_alias(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return {True: "on", False: "off", None: "auto"}[value]
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cpu_devices", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"runtime.cpu_devices={str(value).lower()} must be a whole number >= 1 (logical CPU "
                             "devices), or null, e.g. --params \"runtime.cpu_devices=2\".")
        return value
