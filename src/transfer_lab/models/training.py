"""Training a classifier further: augmentation layers (training only), recompiling, a
crash-safe ``fit`` (early stopping with the best weights, learning-rate reduction, resume from
the last completed epoch) and a progress bar per epoch."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from transfer_lab.io.files import atomic_path, write_json
from transfer_lab.params.fine_tuning import AugmentationParams, FineTuningParams

log = logging.getLogger(__name__)


class FineTuneError(ValueError):
    """Fine-tuning cannot go on as asked; the message names the parameter and how to fix it."""


def augmentation_layers(cfg: AugmentationParams, seed: int = 0) -> Any:
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


def training_model(classifier: Any, aug: AugmentationParams, seed: int = 0) -> Any:
    """``classifier`` behind the augmentation layers; trains the classifier's own weights, so the
    saved model stays the plain classifier (no augmentation inside)."""
    import keras

    if trains_on_logits():  # the same weights, scored before the softmax (see trains_on_logits)
        from transfer_lab.models.backbones import logits_model

        classifier = logits_model(classifier)
    if not aug.active:
        return classifier
    inputs = keras.Input(classifier.input_shape[1:], name="image")
    x = augmentation_layers(aug, seed)(inputs)
    return keras.Model(inputs, classifier(x), name="finetune_trainer")


def layerwise_adam(learning_rate: float, multipliers: Mapping[str, float]) -> Any:
    """Adam whose step for each variable named (by its ``path``) in ``multipliers`` uses the learning
    rate times that factor: discriminative learning rates (fastai's ``lr_mult``), e.g. the backbone
    at a tenth of the head's rate. Any Keras backend (the factor is applied in ``update_step``)."""
    import keras

    class LayerwiseAdam(keras.optimizers.Adam):
        def build(self, variables):
            super().build(variables)
            self._lr_factor = {self._var_key(v): float(multipliers[v.path]) for v in variables
                               if v.path in multipliers and float(multipliers[v.path]) != 1.0}

        def update_step(self, gradient, variable, learning_rate):
            factor = self._lr_factor.get(self._var_key(variable))
            if factor is not None:
                learning_rate = learning_rate * factor
            return super().update_step(gradient, variable, learning_rate)

    return LayerwiseAdam(learning_rate=learning_rate)


def trains_on_logits() -> bool:
    """Whether training should see the model's pre-softmax ``logits`` (a cross-entropy from logits)
    instead of its probabilities. TensorFlow recovers the logits from the softmax op itself, so a
    saturated softmax keeps its gradient; JAX and PyTorch clip the probabilities and a saturated
    head stops learning (seen under JAX: the head's loss stuck at 8.06 from the second step)."""
    import keras

    return keras.backend.backend() != "tensorflow"


def smoothed_sparse_crossentropy(label_smoothing: float, from_logits: bool = False) -> Any:
    """Cross-entropy of integer labels against probabilities (or logits), the target smoothed:
    (1 - e) on the label and e spread evenly over every class (Keras's ``label_smoothing``, for
    sparse labels)."""
    import keras
    from keras import ops

    e = float(label_smoothing)
    if e == 0.0:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True) if from_logits \
            else "sparse_categorical_crossentropy"

    def loss(y_true: Any, y_pred: Any) -> Any:
        hard = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=from_logits)
        logp = ops.log_softmax(y_pred, axis=-1) if from_logits else ops.log(ops.clip(y_pred, 1e-7, 1.0))
        uniform = -ops.mean(logp, axis=-1)
        return (1.0 - e) * hard + e * uniform

    loss.__name__ = f"smoothed_sparse_crossentropy_{e:g}"
    return loss


def compile_for_fine_tuning(model: Any, learning_rate: float, jit_compile: Any = "auto",
                            backbone: Any = None, backbone_lr_mult: float = 1.0, label_smoothing: float = 0.0,
                            from_logits: bool = False) -> None:
    """Recompile (after changing ``trainable``, Keras needs it) with Adam at a low learning rate;
    the ``backbone``'s variables at ``backbone_lr_mult`` times it (:func:`layerwise_adam`); the
    loss with ``label_smoothing`` (:func:`smoothed_sparse_crossentropy`)."""
    import keras

    if backbone is not None and backbone_lr_mult != 1.0:
        optimizer = layerwise_adam(learning_rate, {v.path: backbone_lr_mult for v in backbone.trainable_variables})
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=smoothed_sparse_crossentropy(label_smoothing, from_logits),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def current_learning_rate(model: Any) -> float:
    return float(np.asarray(model.optimizer.learning_rate))


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


def fit_resumable(
    model: Any,
    train_ds: Any,
    val_ds: Any,
    cfg: FineTuningParams,
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
    best = ResumableBest(backup_dir / "state", monitor=cfg.monitor, patience=cfg.early_stopping.patience)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(keras_dir), double_checkpoint=True, delete_checkpoint=False),
        best,
        keras.callbacks.ReduceLROnPlateau(
            monitor=cfg.monitor, factor=cfg.reduce_lr.factor, patience=cfg.reduce_lr.patience,
            min_lr=cfg.reduce_lr.min_lr, mode="min" if cfg.monitor == "val_loss" else "max",
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


class TqdmProgress(_keras_callback_base()):  # type: ignore[misc]
    """One tqdm bar per epoch over its batches, with loss and accuracy."""

    def __init__(self, steps: int, epochs: int):
        super().__init__()
        self.steps, self.epochs, self.bar = steps, epochs, None

    def on_epoch_begin(self, epoch, logs=None):
        from transfer_lab.runtime.progress import progress_bar

        self.bar = progress_bar(total=self.steps, desc=f"Fine-tuning epoch {epoch + 1}/{self.epochs}", unit="batch")

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
