"""The ``fine_tuning`` parameters (conf/base/parameters_fine_tuning.yml)."""

from __future__ import annotations

import difflib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from transfer_lab.models.training import FineTuneError
from transfer_lab.models.unfreeze import parse_unfreeze

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class AugmentConfig:
    flip: str = "horizontal"  # horizontal | vertical | horizontal_and_vertical | none
    rotation: float = 0.05  # fraction of a full turn (0.05 = +-18 degrees); 0 = off
    zoom: float = 0.1  # +- fraction; 0 = off
    contrast: float = 0.1  # +- factor; 0 = off

    @property
    def active(self) -> bool:
        return self.flip != "none" or any(v > 0 for v in (self.rotation, self.zoom, self.contrast))


_FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")


@dataclass(frozen=True)
class FineTuneConfig:
    """The ``fine_tuning`` parameters (conf/base/parameters_fine_tuning.yml), validated."""

    unfreeze: Any = 3
    learning_rate: float = 1e-5
    epochs: int = 10
    batch_size: int = 32
    class_weight: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    monitor: str = "val_loss"
    early_stopping_patience: int = 3
    reduce_lr_factor: float = 0.3
    reduce_lr_patience: int = 1
    min_learning_rate: float = 1e-7
    backup_dir: str = "data/06_models/finetune_backup"
    cache_images: bool = True
    jit_compile: Any = "auto"
    seed: int = 42

    _KEYS = (
        "unfreeze", "learning_rate", "epochs", "batch_size", "class_weight", "augmentation", "monitor", "early_stopping",
        "reduce_lr", "backup_dir", "cache_images", "jit_compile", "seed",
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> "FineTuneConfig":
        p = dict(params or {})
        unknown = set(p) - set(cls._KEYS)
        if unknown:
            near = {k: difflib.get_close_matches(k, cls._KEYS, n=1) for k in unknown}
            hints = ", ".join(f"{k}" + (f" (did you mean {near[k][0]}?)" if near[k] else "") for k in sorted(unknown))
            raise FineTuneError(f"Unknown fine_tuning parameter(s): {hints}. Known: {', '.join(cls._KEYS)}.")

        unfreeze = p.get("unfreeze", 3)
        parse_unfreeze(unfreeze)  # syntax only; the backbone checks the range / name

        lr = _number(p.get("learning_rate", 1e-5), "fine_tuning.learning_rate")
        if not lr > 0:
            raise FineTuneError(
                f"fine_tuning.learning_rate must be positive, got {lr}. Fine-tuning wants a small one, "
                "e.g. --params fine_tuning.learning_rate=1e-5."
            )
        if lr > 1e-2:
            log.warning("fine_tuning.learning_rate=%g is high for fine-tuning; 1e-5..1e-4 keeps the pretrained features.", lr)
        epochs = _whole(p.get("epochs", 10), "fine_tuning.epochs", minimum=1)
        batch = _whole(p.get("batch_size", 32), "fine_tuning.batch_size", minimum=1)

        aug_p = p.get("augmentation")
        if aug_p in (None, False, "none", "off"):
            aug = AugmentConfig(flip="none", rotation=0.0, zoom=0.0, contrast=0.0)
        elif isinstance(aug_p, Mapping):
            extra = set(aug_p) - {"flip", "rotation", "zoom", "contrast"}
            if extra:
                raise FineTuneError(
                    f"Unknown fine_tuning.augmentation parameter(s): {', '.join(sorted(extra))}. "
                    "Known: flip, rotation, zoom, contrast."
                )
            flip = str(aug_p.get("flip", "horizontal") or "none").strip().lower()
            if flip in ("false", "off", "null"):
                flip = "none"
            if flip not in _FLIPS:
                raise FineTuneError(f"fine_tuning.augmentation.flip={flip!r}: use one of {', '.join(_FLIPS)}.")
            vals = {}
            for key, hi in (("rotation", 0.5), ("zoom", 0.9), ("contrast", 1.0)):
                v = _number(aug_p.get(key, getattr(AugmentConfig, key)) or 0.0, f"fine_tuning.augmentation.{key}")
                if not 0 <= v <= hi:
                    raise FineTuneError(
                        f"fine_tuning.augmentation.{key}={v} is out of range: use 0 (off) to {hi} "
                        f"(e.g. rotation 0.05, zoom 0.1, contrast 0.1)."
                    )
                vals[key] = v
            aug = AugmentConfig(flip=flip, **vals)
        else:
            raise FineTuneError(
                "fine_tuning.augmentation must be a mapping {flip, rotation, zoom, contrast} or null (no augmentation), "
                f"got {aug_p!r}."
            )

        monitor = str(p.get("monitor", "val_loss"))
        if monitor not in ("val_loss", "val_accuracy"):
            raise FineTuneError(f"fine_tuning.monitor={monitor!r}: use val_loss or val_accuracy.")
        es = p.get("early_stopping") or {}
        rl = p.get("reduce_lr") or {}
        if not isinstance(es, Mapping) or set(es) - {"patience"}:
            raise FineTuneError("fine_tuning.early_stopping takes one key, patience (epochs without improvement).")
        if not isinstance(rl, Mapping) or set(rl) - {"factor", "patience", "min_lr"}:
            raise FineTuneError("fine_tuning.reduce_lr takes factor, patience and min_lr.")
        patience = _whole(es.get("patience", 3), "fine_tuning.early_stopping.patience", minimum=1)
        factor = _number(rl.get("factor", 0.3), "fine_tuning.reduce_lr.factor")
        if not 0 < factor < 1:
            raise FineTuneError(f"fine_tuning.reduce_lr.factor={factor} must be between 0 and 1 (e.g. 0.3).")
        rl_patience = _whole(rl.get("patience", 1), "fine_tuning.reduce_lr.patience", minimum=0)
        min_lr = _number(rl.get("min_lr", 1e-7), "fine_tuning.reduce_lr.min_lr")
        if min_lr < 0 or min_lr > lr:
            raise FineTuneError(
                f"fine_tuning.reduce_lr.min_lr={min_lr} must be between 0 and fine_tuning.learning_rate={lr}."
            )
        backup = str(p.get("backup_dir", cls.backup_dir) or "").strip()
        if not backup:
            raise FineTuneError(
                "fine_tuning.backup_dir is empty: give a folder for the crash-safe training state, "
                "e.g. data/06_models/finetune_backup."
            )
        seed = _whole(p.get("seed", 42), "fine_tuning.seed", minimum=0)
        class_weight = p.get("class_weight", True)
        if not isinstance(class_weight, bool):
            raise FineTuneError(f"fine_tuning.class_weight must be true or false, got {class_weight!r}.")
        jit = p.get("jit_compile", "auto")
        if jit not in ("auto", True, False):
            raise FineTuneError(f"fine_tuning.jit_compile={jit!r}: use auto, true or false (XLA).")
        return cls(
            unfreeze=unfreeze, learning_rate=lr, epochs=epochs, batch_size=batch, class_weight=class_weight,
            augmentation=aug,
            monitor=monitor, early_stopping_patience=patience, reduce_lr_factor=factor,
            reduce_lr_patience=rl_patience, min_learning_rate=min_lr, backup_dir=backup,
            cache_images=bool(p.get("cache_images", True)), jit_compile=jit, seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FineTuneConfig":
        d = dict(d)
        d["augmentation"] = AugmentConfig(**d.get("augmentation", {}))
        return cls(**d)


def _number(value: Any, param: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise FineTuneError(f"{param} must be a number, got {value!r}.") from None
    if not np.isfinite(out):
        raise FineTuneError(f"{param} must be a finite number, got {value!r}.")
    return out


def _whole(value: Any, param: str, minimum: int) -> int:
    if isinstance(value, bool) or not (isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit())):
        raise FineTuneError(f"{param} must be a whole number >= {minimum}, got {value!r}.")
    out = int(value)
    if out < minimum:
        raise FineTuneError(f"{param} must be >= {minimum}, got {out}.")
    return out


