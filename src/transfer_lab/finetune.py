"""Fine-tuning a trained classifier: unfreeze the top of its backbone, keep BatchNorm frozen,
augment in training only, and resume an interrupted ``fit`` from its last completed epoch.

Used by the ``fine_tuning`` pipeline; kept here so benches and other pipelines can reuse it.

BatchNorm: in Keras 3, ``backbone(x, training=False)`` does *not* keep BatchNormalization in
inference mode once the backbone is trainable again (the outer model's ``training`` flag wins).
The only thing that does is ``layer.trainable = False`` on every BatchNormalization layer, which
:func:`unfreeze_top` always does. (The MobileNetV2 weights in ../shared have BN folded: batch
statistics would wreck them.)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from transfer_lab.backbones import backbone_of, get_spec, layer_groups
from transfer_lab.io_utils import atomic_path, write_json

log = logging.getLogger(__name__)

FINETUNED_SUFFIX = "_finetuned"

UNFREEZE_HELP = (
    "Set fine_tuning.unfreeze to a number of blocks from the top (e.g. 3), 'N blocks', 'N layers', "
    "'all', or the name of a block or layer of the backbone (it and everything above it are trained)."
)


class FineTuneError(ValueError):
    """Bad fine-tuning parameters; the message names the parameter and how to fix it."""


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Unfreezing
# --------------------------------------------------------------------------------------------

_COUNT = re.compile(r"^\s*(\d+)\s*(blocks?|layers?)?\s*$", re.IGNORECASE)


def parse_unfreeze(value: Any) -> tuple[str, Any]:
    """``("blocks", n)``, ``("layers", n)``, ``("all", None)`` or ``("name", str)``."""
    if isinstance(value, bool) or value is None:
        raise FineTuneError(f"fine_tuning.unfreeze={value!r} is not valid. {UNFREEZE_HELP}")
    if isinstance(value, (int, np.integer)):
        kind, n = "blocks", int(value)
    elif isinstance(value, float):
        raise FineTuneError(f"fine_tuning.unfreeze={value!r} must be a whole number. {UNFREEZE_HELP}")
    else:
        text = str(value).strip()
        if not text:
            raise FineTuneError(f"fine_tuning.unfreeze is empty. {UNFREEZE_HELP}")
        if text.lower() == "all":
            return "all", None
        m = _COUNT.match(text)
        if not m:
            return "name", text
        n = int(m.group(1))
        kind = "layers" if (m.group(2) or "blocks").lower().startswith("layer") else "blocks"
    if n < 1:
        raise FineTuneError(
            f"fine_tuning.unfreeze={value!r} unfreezes nothing: use 1 or more (fine_tuning trains the top of the "
            f"backbone; head_training alone trains the head). {UNFREEZE_HELP}"
        )
    return kind, n


def _weight_layers(backbone: Any) -> list[Any]:
    return [l for l in backbone.layers if l.__class__.__name__ != "InputLayer"]


def resolve_unfreeze(backbone: Any, backbone_name: str, unfreeze: Any) -> dict[str, Any]:
    """Which backbone layers ``unfreeze`` selects: ``{"first_layer", "start", "n_layers",
    "blocks", "description"}``; ``start`` indexes the backbone's non-input layers.

    Raises FineTuneError when it asks for more layers or blocks than exist, or names no layer."""
    kind, arg = parse_unfreeze(unfreeze)
    layers = _weight_layers(backbone)
    spec = get_spec(backbone_name)
    groups = layer_groups(backbone, spec)
    starts, idx = [], 0
    for _, members in groups:
        starts.append(idx)
        idx += len(members)
    if kind == "all":
        start = 0
    elif kind == "blocks":
        if arg > len(groups):
            raise FineTuneError(
                f"fine_tuning.unfreeze={unfreeze!r} asks for {arg} blocks but {backbone_name} has only {len(groups)} "
                f"(top ones: {', '.join(g for g, _ in groups[::-1][:5])}). Use 1..{len(groups)}, or 'all'."
            )
        start = starts[len(groups) - arg]
    elif kind == "layers":
        if arg > len(layers):
            raise FineTuneError(
                f"fine_tuning.unfreeze={unfreeze!r} asks for {arg} layers but {backbone_name} has only {len(layers)}. "
                f"Use 1..{len(layers)}, a block count like '3 blocks', or 'all'."
            )
        start = len(layers) - arg
    else:
        block_names = [g for g, _ in groups]
        layer_names = [l.name for l in layers]
        if arg in block_names:
            start = starts[block_names.index(arg)]
        elif arg in layer_names:
            start = layer_names.index(arg)
        else:
            near = difflib.get_close_matches(arg, block_names + layer_names, n=5, cutoff=0.6)
            raise FineTuneError(
                f"fine_tuning.unfreeze={arg!r} is not a block or layer of {backbone_name}."
                + (f" Near matches: {', '.join(near)}." if near else "")
                + f" Blocks, top first: {', '.join(block_names[::-1][:8])}, ... {UNFREEZE_HELP}"
            )
    chosen = layers[start:]
    blocks = [g for (g, members), s in zip(groups, starts) if s + len(members) > start]
    return {
        "start": start,
        "first_layer": layers[start].name,
        "n_layers": len(chosen),
        "blocks": blocks,
        "description": f"{len(chosen)} of {len(layers)} backbone layers, from {layers[start].name} to the top",
    }


def _all_layers(model: Any):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def unfreeze_top(model: Any, backbone_name: str, unfreeze: Any) -> dict[str, Any]:
    """Make the top of ``model``'s backbone trainable (in place); every BatchNormalization layer
    stays frozen (``trainable = False``, hence inference mode in ``fit``). The head stays trainable.

    Returns what was selected plus trainable parameter counts."""
    import keras

    backbone = backbone_of(model)
    sel = resolve_unfreeze(backbone, backbone_name, unfreeze)
    backbone.trainable = True  # cascades to every sub-layer; then freeze below the cut
    for i, layer in enumerate(_weight_layers(backbone)):
        layer.trainable = i >= sel["start"]
    n_bn = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            n_bn += 1
    sel["n_batchnorm_frozen"] = n_bn
    sel["trainable_params"] = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    sel["total_params"] = int(sum(np.prod(v.shape) for v in model.weights))
    return sel


def refreeze(model: Any) -> None:
    """Freeze the backbone again (as head_training leaves it) before the model is saved."""
    backbone_of(model).trainable = False


# --------------------------------------------------------------------------------------------
# Augmentation and the training model
# --------------------------------------------------------------------------------------------


def augmentation_layers(cfg: AugmentConfig, seed: int = 0) -> Any:
    """Keras preprocessing layers on 0-255 RGB; random in training, the identity at inference."""
    import keras

    layers = []
    if cfg.flip != "none":
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=seed, name="flip"))
    if cfg.rotation > 0:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1, name="rotation"))
    if cfg.zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed + 2, name="zoom"))
    if cfg.contrast > 0:
        layers.append(keras.layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 3, name="contrast"))
    return keras.Sequential(layers, name="augmentation")


def training_model(classifier: Any, aug: AugmentConfig, seed: int = 0) -> Any:
    """``classifier`` behind the augmentation layers; trains the classifier's own weights, so the
    saved model stays the plain classifier (no augmentation inside)."""
    import keras

    if not aug.active:
        return classifier
    inputs = keras.Input(classifier.input_shape[1:], name="image")
    x = augmentation_layers(aug, seed)(inputs)
    return keras.Model(inputs, classifier(x), name="finetune_trainer")


def compile_for_fine_tuning(model: Any, learning_rate: float, jit_compile: Any = "auto") -> None:
    """Recompile (after changing ``trainable``, Keras needs it) with Adam at a low learning rate."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def current_learning_rate(model: Any) -> float:
    return float(np.asarray(model.optimizer.learning_rate))


# --------------------------------------------------------------------------------------------
# Crash-safe training
# --------------------------------------------------------------------------------------------


def weights_fingerprint(model: Any) -> str:
    """sha256 of all weights (identifies the starting model in the backup key)."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    return h.hexdigest()


def backup_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


class ResumableBest(_keras_callback_base()):  # type: ignore[misc]
    """Early stopping with the best weights kept, whose state survives a crash.

    Each completed epoch appends to a history file and, when ``monitor`` improves, saves the
    weights; after a restart (``BackupAndRestore`` sets the epoch) both are read back, so early
    stopping and the best weights span the whole run, and the returned history has every epoch.
    """

    def __init__(self, state_dir: str | Path, monitor: str = "val_loss", patience: int = 3):
        super().__init__()
        self.dir = Path(state_dir)
        self.monitor = monitor
        self.mode_min = not monitor.endswith("accuracy")
        self.patience = patience
        self.state_path = self.dir / "state.json"
        self.best_path = self.dir / "best.weights.h5"
        self.reset()

    def reset(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.resumed_from = 0
        self.epoch_seconds: list[float] = []
        self.train_seconds: list[float] = []
        self.stopped_epoch: int | None = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode_min else value > self.best

    def on_train_begin(self, logs=None):
        self.reset()
        start = int(getattr(self.model, "_initial_epoch", 0) or 0)
        if start and self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            self.history = {k: v[:start] for k, v in state["history"].items()}
            self.epoch_seconds = state.get("epoch_seconds", [])[:start]
            self.train_seconds = state.get("train_seconds", [])[:start]
            self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
            if self.best_epoch >= start:  # crashed between our save and the Keras backup
                self.best, self.best_epoch = None, -1
            self.resumed_from = start
            log.info("Resuming fine-tuning at epoch %d (best %s %.4f at epoch %d).", start + 1, self.monitor,
                     self.best if self.best is not None else float("nan"), self.best_epoch + 1)
        elif start:
            self.resumed_from = start

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_train = None

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training part is over
        if getattr(self, "_t_train", 0) is None:
            self._t_train = time.perf_counter() - self._t0

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if "learning_rate" not in logs and getattr(self.model, "optimizer", None) is not None:
            logs["learning_rate"] = current_learning_rate(self.model)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))
        self.epoch_seconds.append(time.perf_counter() - self._t0)
        self.train_seconds.append(self._t_train if self._t_train is not None else self.epoch_seconds[-1])
        value = logs.get(self.monitor)
        if value is None:
            raise FineTuneError(f"fine_tuning.monitor={self.monitor!r} was not computed (is there a validation split?).")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._better(float(value)):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            with atomic_path(self.best_path, suffix=".tmp.weights.h5") as tmp:
                self.model.save_weights(tmp)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
                self.stopped_epoch = epoch
        write_json(self.state_path, {
            "history": self.history, "epoch_seconds": self.epoch_seconds, "train_seconds": self.train_seconds,
            "best": self.best,
            "best_epoch": self.best_epoch, "wait": self.wait, "epoch": epoch + 1,
        })

    def restore_best(self) -> None:
        if self.best_path.exists():
            self.model.load_weights(self.best_path)


class StopAfterEpochs(_keras_callback_base()):  # type: ignore[misc]
    """Test helper: raise (like a kill) at the start of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


def fit_resumable(
    model: Any,
    train_ds: Any,
    val_ds: Any,
    cfg: FineTuneConfig,
    backup_dir: str | Path,
    *,
    extra_callbacks: Sequence[Any] = (),
    verbose: int | str = "auto",
    class_weight: Mapping[int, float] | None = None,
) -> dict[str, Any]:
    """``model.fit`` with early stopping, learning-rate reduction and best weights, resumable.

    ``backup_dir`` must be specific to this run's parameters; an interrupted call continues from
    the last completed epoch when called again with the same directory. On success the backup is
    deleted and the best weights are in ``model``. Returns history, epochs run, resume info.
    """
    import keras

    backup_dir = Path(backup_dir)
    keras_dir = backup_dir / "keras"
    best = ResumableBest(backup_dir / "state", monitor=cfg.monitor, patience=cfg.early_stopping_patience)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(keras_dir), double_checkpoint=True, delete_checkpoint=False),
        best,
        keras.callbacks.ReduceLROnPlateau(
            monitor=cfg.monitor, factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr_patience,
            min_lr=cfg.min_learning_rate, mode="min" if cfg.monitor == "val_loss" else "max",
        ),
        *extra_callbacks,
    ]
    # BackupAndRestore restores the weights at train begin but not the learning rate that
    # ReduceLROnPlateau lowered: restore it from our own state file.
    state_file = best.state_path
    if (keras_dir / "training_metadata.json").exists() and state_file.exists():
        saved = json.loads(state_file.read_text())["history"].get("learning_rate")
        meta = json.loads((keras_dir / "training_metadata.json").read_text())
        if saved and meta.get("epoch"):
            model.optimizer.learning_rate = saved[min(meta["epoch"], len(saved)) - 1]
    t0 = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=verbose,
              class_weight=dict(class_weight) if class_weight else None)
    best.restore_best()
    info = {
        "history": best.history,
        "epochs_run": len(next(iter(best.history.values()), [])),
        "resumed_from_epoch": best.resumed_from,
        "best_epoch": best.best_epoch + 1,
        "best_" + cfg.monitor: best.best,
        "stopped_early": best.stopped_epoch is not None,
        "epoch_seconds": best.epoch_seconds,
        "train_seconds": best.train_seconds,
        "fit_seconds_this_call": time.perf_counter() - t0,
    }
    shutil.rmtree(backup_dir, ignore_errors=True)
    return info


# --------------------------------------------------------------------------------------------
# Head-only classifier, kept beside the fine-tuned one
# --------------------------------------------------------------------------------------------


def keras_model_name(path: str | Path) -> str:
    """The model name stored in a ``.keras`` file, without loading the model."""
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    return str(config.get("config", {}).get("name") or config.get("name") or "")


def is_finetuned_file(path: str | Path) -> bool:
    return keras_model_name(path).endswith(FINETUNED_SUFFIX)


def mark_finetuned(model: Any) -> None:
    if not model.name.endswith(FINETUNED_SUFFIX):
        model.name = model.name + FINETUNED_SUFFIX


def _is_chief() -> bool:
    from transfer_lab.distribute import is_chief

    return is_chief()


def _kedro_dataset_base():
    from transfer_lab.datasets import KerasModelDataset

    return KerasModelDataset


class HeadClassifierDataset(_kedro_dataset_base()):  # type: ignore[misc]
    """The head-only classifier that fine-tuning starts from.

    ``filepath`` is the classifier head_training writes (``data/06_models/classifier.keras``),
    which fine_tuning later replaces with the fine-tuned model (marked by a ``_finetuned`` model
    name). Loading gives the head-only model either way: a head-only file is first copied to
    ``head_copy`` (``data/06_models/head_classifier.keras``); a fine-tuned file makes it load
    that copy. So running fine_tuning twice starts from the head both times, and a new
    head_training run refreshes the copy.
    """

    def __init__(self, filepath: str, head_copy: str, **kwargs: Any):
        super().__init__(filepath, **kwargs)
        self._head_copy = Path(head_copy)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "head_copy": str(self._head_copy)}

    def load(self) -> Any:
        import keras
        from kedro.io import DatasetError

        self._check("Model")
        if is_finetuned_file(self._filepath):
            if not self._head_copy.exists():
                raise DatasetError(
                    f"{self._filepath} is already fine-tuned and the head-only copy {self._head_copy} is missing. "
                    "Run `kedro run --pipelines=head_training` first, then fine_tuning."
                )
            source = self._head_copy
        elif not _is_chief():  # multi-worker training: only the chief writes files
            source = self._filepath
        else:
            with atomic_path(self._head_copy, suffix=".tmp.keras") as tmp:
                shutil.copyfile(self._filepath, tmp)
            source = self._head_copy
        return keras.saving.load_model(source, compile=False)

    def save(self, model: Any) -> None:  # pragma: no cover - read-only by design
        raise NotImplementedError("head_classifier is read-only; head_training writes the classifier.")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def split_data(manifest: Any, class_names: Sequence[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{split: (paths, class indices)}`` from the manifest (duplicates skipped), labels mapped
    with the classifier's own ``class_names`` order."""
    missing = [c for c in ("path", "label", "split") if c not in manifest.columns]
    if missing:
        raise FineTuneError(
            f"The manifest lacks column(s) {', '.join(missing)}. Re-run `kedro run --pipelines=data_ingestion`."
        )
    from transfer_lab.inputs import without_duplicates

    rows = without_duplicates(manifest)
    index = {str(c): i for i, c in enumerate(class_names)}
    labels = rows["label"].astype(str)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise FineTuneError(
            f"The manifest has labels the classifier does not know ({', '.join(unknown[:5])}"
            f"{'...' if len(unknown) > 5 else ''}): it was trained on other data. Re-run "
            "`kedro run --pipelines=feature_extraction,head_training` on this manifest, then fine_tuning."
        )
    out = {}
    for split in ("train", "val", "test"):
        part = rows[rows["split"] == split]
        out[split] = (part["path"].astype(str).tolist(), np.asarray([index[str(l)] for l in part["label"]], dtype=np.int32))
    for split in ("train", "val"):
        if not out[split][0]:
            raise FineTuneError(
                f"The manifest has no {split} photos; fine-tuning needs train and val splits "
                "(data.split in conf/base/parameters_data_ingestion.yml)."
            )
    return out


def train_dataset(paths: Sequence[str], labels: np.ndarray, *, image_size: int, batch_size: int, seed: int,
                  cache: bool = True) -> Any:
    """Shuffled every epoch; with ``cache`` decoded photos are kept in memory after the first epoch."""
    from transfer_lab.inputs import image_dataset

    return image_dataset(paths, labels, image_size=image_size, batch_size=batch_size, shuffle=True, seed=seed,
                         cache=cache)


def eval_dataset(paths: Sequence[str], labels: np.ndarray | None, *, image_size: int, batch_size: int,
                 cache: bool = True) -> Any:
    from transfer_lab.inputs import image_dataset

    return image_dataset(paths, labels, image_size=image_size, batch_size=batch_size, shuffle=False, cache=cache)


def predict(model: Any, paths: Sequence[str], *, image_size: int, batch_size: int, desc: str = "Predicting") -> np.ndarray:
    """Class probabilities for ``paths`` in order, with a progress bar."""
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(paths), desc=desc, unit="img") as bar:
        for batch in eval_dataset(paths, None, image_size=image_size, batch_size=batch_size, cache=False):
            out.append(np.asarray(model(batch, training=False)))
            bar.update(len(out[-1]))
    n_classes = int(model.output_shape[-1])
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)


class TqdmProgress(_keras_callback_base()):  # type: ignore[misc]
    """One tqdm bar per epoch over its batches, with loss and accuracy."""

    def __init__(self, steps: int, epochs: int):
        super().__init__()
        self.steps, self.epochs, self.bar = steps, epochs, None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.steps, desc=f"Fine-tuning epoch {epoch + 1}/{self.epochs}", unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            if logs:
                self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items() if k in ("loss", "accuracy")})

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            if logs:
                self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items() if k != "learning_rate"})
            self.bar.close()
            self.bar = None
