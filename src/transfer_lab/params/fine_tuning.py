"""The ``fine_tuning`` parameters (conf/base/parameters_fine_tuning.yml).

``unfreeze`` is checked here for its syntax only; whether the backbone has that many blocks or
layers, or a layer of that name, is checked on the classifier itself when fine_tuning starts
(transfer_lab.models.unfreeze.resolve_unfreeze).
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.fields import AutoTrueFalse, KeyedParams, TrueFalse, param

log = logging.getLogger(__name__)

UNFREEZE_HELP = (
    "Set fine_tuning.unfreeze to a number of blocks from the top (e.g. 3), 'N blocks', 'N layers', "
    "'all', or the name of a block or layer of the backbone (it and everything above it are trained)."
)

_COUNT = re.compile(r"^\s*(\d+)\s*(blocks?|layers?)?\s*$", re.IGNORECASE)


def parse_unfreeze(value: Any) -> tuple[str, Any]:
    """``("blocks", n)``, ``("layers", n)``, ``("all", None)`` or ``("name", str)``; ValueError,
    naming fine_tuning.unfreeze, when ``value`` is none of them."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"fine_tuning.unfreeze={value!r} is not valid. {UNFREEZE_HELP}")
    if isinstance(value, int):
        kind, n = "blocks", int(value)
    elif isinstance(value, float):
        raise ValueError(f"fine_tuning.unfreeze={value!r} must be a whole number. {UNFREEZE_HELP}")
    else:
        text = str(value).strip()
        if not text:
            raise ValueError(f"fine_tuning.unfreeze is empty. {UNFREEZE_HELP}")
        if text.lower() == "all":
            return "all", None
        m = _COUNT.match(text)
        if not m:
            return "name", text
        n = int(m.group(1))
        kind = "layers" if (m.group(2) or "blocks").lower().startswith("layer") else "blocks"
    if n < 1:
        raise ValueError(
            f"fine_tuning.unfreeze={value!r} unfreezes nothing: use 1 or more (fine_tuning trains the top of the "
            f"backbone; head_training alone trains the head). {UNFREEZE_HELP}"
        )
    return kind, n


_FILE = "parameters_fine_tuning.yml"


class AugmentationParams(KeyedParams):
    """Keras preprocessing layers on 0-255 RGB, random in training only (``augmentation: null`` =
    none of them)."""

    where: ClassVar[str] = "fine_tuning.augmentation"
    conf_file: ClassVar[str | None] = _FILE

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical", "none"] = param(
        "horizontal", "Use one of horizontal, vertical, horizontal_and_vertical, none", "none")
    rotation: float = param(0.05, "A fraction of a full turn: 0 (off) to 0.5 (0.05 = up to 18 degrees)",
                            ge=0.0, le=0.5, allow_inf_nan=False)
    zoom: float = param(0.1, "Up to +- this fraction: 0 (off) to 0.9", ge=0.0, le=0.9, allow_inf_nan=False)
    contrast: float = param(0.1, "Up to +- this factor: 0 (off) to 1", ge=0.0, le=1.0, allow_inf_nan=False)

    @field_validator("flip", mode="before")
    @classmethod
    def _flip_off(cls, value: Any) -> Any:
        if value is None or value is False:
            return "none"
        if isinstance(value, str):
            text = value.strip().lower()
            return "none" if text in ("", "false", "off", "null") else text
        return value

    @field_validator("rotation", "zoom", "contrast", mode="before")
    @classmethod
    def _null_is_off(cls, value: Any) -> Any:
        return 0.0 if value is None else value

    @classmethod
    def off(cls) -> "AugmentationParams":
        """No augmentation at all."""
        return cls(flip="none", rotation=0.0, zoom=0.0, contrast=0.0)

    @property
    def active(self) -> bool:
        return self.flip != "none" or any(v > 0 for v in (self.rotation, self.zoom, self.contrast))


class EarlyStoppingParams(KeyedParams):
    where: ClassVar[str] = "fine_tuning.early_stopping"
    conf_file: ClassVar[str | None] = _FILE

    patience: int = param(1, "Epochs without improvement before stopping (the best weights are kept): "
                             "a whole number, 1 or more", 5, ge=1)


class ReduceLRParams(KeyedParams):
    where: ClassVar[str] = "fine_tuning.reduce_lr"
    conf_file: ClassVar[str | None] = _FILE

    factor: float = param(0.3, "The learning rate is multiplied by this after `patience` epochs without "
                               "improvement: between 0 and 1", gt=0.0, lt=1.0, allow_inf_nan=False)
    patience: int = param(1, "Epochs without improvement before the learning rate is reduced: a whole "
                             "number, 0 or more", 2, ge=0)
    min_lr: float = param(1e-7, "The lowest learning rate: 0 to fine_tuning.learning_rate", ge=0.0,
                          allow_inf_nan=False)


def _null_is_defaults(value: Any) -> Any:
    return {} if value is None else value


@section("fine_tuning", conf_file=_FILE)
class FineTuningParams(KeyedParams):
    """Fine-tuning of head_training's classifier: how much of the backbone to train, how, and when
    to stop."""

    unfreeze: int | str = param(3, UNFREEZE_HELP, "5 blocks")
    learning_rate: float = param(1e-4, "Fine-tuning wants a small positive learning rate (1e-5..1e-4 keeps "
                                       "the pretrained features)", 1e-5, gt=0.0, allow_inf_nan=False)
    backbone_lr_mult: float = param(
        1.0, "The backbone's learning rate as a fraction of fine_tuning.learning_rate (the head's): above 0, "
             "1 = one rate for all (fastai's discriminative rates: e.g. 0.1)", 0.1, gt=0.0, allow_inf_nan=False)
    label_smoothing: float = param(0.0, "Label smoothing: 0 (none) to below 1", 0.1, ge=0.0, lt=1.0,
                                   allow_inf_nan=False)
    epochs: int = param(4, "The most epochs: a whole number, 1 or more", 5, ge=1)
    batch_size: int = param(32, "Photos per step and replica: a whole number, 1 or more", 16, ge=1)
    class_weight: TrueFalse = param(True, "Weigh classes by 1/frequency: true or false", False)
    augmentation: AugmentationParams = AugmentationParams()
    monitor: Literal["val_loss", "val_accuracy"] = param(
        "val_loss", "What early stopping, learning-rate reduction and the best weights watch: val_loss or "
                    "val_accuracy", "val_accuracy")
    early_stopping: EarlyStoppingParams = EarlyStoppingParams()
    reduce_lr: ReduceLRParams = ReduceLRParams()
    backup_dir: str = param("data/06_models/finetune_backup", "A folder for the crash-safe training state",
                            min_length=1)
    cache_images: TrueFalse = param(True, "Keep the decoded photos in memory after the first epoch: true or false",
                                    False)
    jit_compile: AutoTrueFalse = param("auto", "XLA: auto (runtime.jit_compile), true or false", False)
    seed: int = param(42, "The random seed: a whole number, 0 or more", 1, ge=0)

    @field_validator("unfreeze", mode="before")
    @classmethod
    def _unfreeze_syntax(cls, value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        kind, n = parse_unfreeze(value)
        if kind == "blocks" and not isinstance(value, int) and str(value).strip().isdigit():
            return n  # "3" from the command line is 3 blocks
        return value if isinstance(value, int) else str(value).strip()

    @field_validator("augmentation", mode="before")
    @classmethod
    def _no_augmentation(cls, value: Any) -> Any:
        if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
            return AugmentationParams.off()
        if not isinstance(value, (dict, AugmentationParams)):
            raise ValueError(
                f"fine_tuning.augmentation={value!r} is not valid: give a mapping {{flip, rotation, zoom, contrast}} "
                "or null (no augmentation), e.g. --params \"fine_tuning.augmentation.rotation=0\" or "
                "--params \"fine_tuning.augmentation=null\".")
        return value

    @field_validator("early_stopping", "reduce_lr", mode="before")
    @classmethod
    def _defaults(cls, value: Any) -> Any:
        return _null_is_defaults(value)

    @field_validator("backup_dir", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(
                "fine_tuning.backup_dir is empty: give a folder for the crash-safe training state, "
                "e.g. --params \"fine_tuning.backup_dir=data/06_models/finetune_backup\".")
        return value.strip() if isinstance(value, str) else value

    @field_validator("learning_rate")
    @classmethod
    def _warn_high(cls, value: float) -> float:
        if value > 1e-2:
            log.warning("fine_tuning.learning_rate=%g is high for fine-tuning; 1e-5..1e-4 keeps the pretrained "
                        "features.", value)
        return value

    @model_validator(mode="after")
    def _min_lr_below_learning_rate(self) -> "FineTuningParams":
        if self.reduce_lr.min_lr > self.learning_rate:
            raise ValueError(
                f"fine_tuning.reduce_lr.min_lr={self.reduce_lr.min_lr:g} must be between 0 and "
                f"fine_tuning.learning_rate={self.learning_rate:g}, e.g. --params \"fine_tuning.reduce_lr.min_lr=1e-7\"."
            )
        return self
