"""head_training: a classifier head on the cached features, then backbone + head as one model."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from transfer_lab.data.tfdata import array_dataset, balanced_class_weights
from transfer_lab.io import tracking
from transfer_lab.models.backbones import build_classifier, build_head, logits_model
from transfer_lab.models.headfit import fit_head
from transfer_lab.models.predict import predict_array
from transfer_lab.models.training import trains_on_logits
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.head_training import HeadTrainingParams
from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.reports import plots
from transfer_lab.reports.metrics import classification_report
from transfer_lab.runtime.devices import set_seed
from transfer_lab.runtime.strategy import setup_runtime

log = logging.getLogger(__name__)


class HeadTrainingError(ValueError):
    """head_training cannot use its input (features, backbone); the message says what to run or change."""


def _check_features(features: dict[str, np.ndarray]) -> None:
    needed = ["class_names", "train_features", "train_labels", "val_features", "val_labels", "test_features", "test_labels"]
    missing = [k for k in needed if k not in features]
    if missing:
        raise HeadTrainingError(
            f"data/04_feature/features.npz lacks {', '.join(missing)}: it was not written by this project's "
            "feature_extraction. Run `kedro run --pipelines=feature_extraction`."
        )
    if len(features["train_labels"]) == 0:
        raise HeadTrainingError("No training features. Run `kedro run --pipelines=data_ingestion,feature_extraction`.")


class _EpochBar:
    """A tqdm bar over epochs, showing the latest losses (as a Keras callback)."""

    def __new__(cls, total: int):
        import keras

        from transfer_lab.runtime.progress import progress_bar

        class Bar(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = progress_bar(total=total, desc="Head epochs", unit="epoch")

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in ("loss", "val_loss", "val_accuracy")})
                self.bar.update(1)

            def on_train_end(self, logs=None):
                self.bar.close()

        return Bar()


def flagged_mask(features: dict[str, np.ndarray], split: str, flagged: dict[str, str]) -> np.ndarray:
    """True for the photos of ``split`` to keep: all but those the audit flagged (``flagged``:
    path -> the label the audit saw), when their label is still the one the audit saw (a table
    from an earlier labelling of the photos leaves them in)."""
    n = len(features[f"{split}_labels"])
    if not flagged or f"{split}_paths" not in features:
        return np.ones(n, bool)
    names = [str(c) for c in features["class_names"]]
    paths = np.asarray(features[f"{split}_paths"], dtype=str)
    labels = np.asarray(features[f"{split}_labels"])
    return np.asarray([flagged.get(p) != names[int(y)] for p, y in zip(paths, labels)], bool)


def _flagged_paths(params: HeadTrainingParams, label_issues: Any) -> dict[str, str]:
    """path -> given label of the photos the audit flagged, when ``head_training.exclude_label_issues``
    (empty, with a warning saying what to run, when the audit has not run)."""
    if not params.exclude_label_issues:
        return {}
    if label_issues is None or (hasattr(label_issues, "exists") and not label_issues.exists()):
        log.warning("head_training.exclude_label_issues=true but data/08_reporting/label_issues.csv does not exist: "
                    "training on every photo. Run `kedro run --pipelines=audit` first (after feature_extraction) to "
                    "leave out the photos it flags, or set --params \"head_training.exclude_label_issues=false\".")
        return {}
    table = label_issues() if callable(label_issues) else label_issues
    if not {"path", "given"} <= set(table.columns):
        raise HeadTrainingError("data/08_reporting/label_issues.csv lacks the path or given column: it was not "
                                "written by this project's audit. Run `kedro run --pipelines=audit`.")
    return dict(zip(table["path"].astype(str), table["given"].astype(str)))


def train_head(
    features: dict[str, np.ndarray], params: HeadTrainingParams, runtime: RuntimeParams, label_issues: Any = None
) -> tuple[Any, dict[str, list[float]]]:
    """Dropout + dense logits + softmax on the pooled features, Adam, early stopping on the
    validation loss (best weights restored). Seeded: the same inputs give the same head.

    With ``flip_augment`` the mirror-image features (feature_extraction.flip_augment) join the
    training samples; with ``class_weight`` classes weigh by 1/frequency; with ``refit_on_val`` a
    fresh head is then trained on train + val for the best number of epochs found (the test split
    is never used for any choice). With ``exclude_label_issues`` the photos the audit flagged
    (``label_issues``: the table or a deferred load of it) are left out of the training samples
    (train, and val in the refit); early stopping still watches the whole val split.
    """
    import keras

    _check_features(features)
    n_classes = len(features["class_names"])
    if n_classes < 2:
        raise HeadTrainingError(
            f"Only one class ({features['class_names'][0]}) in the features: a classifier needs two or more. "
            "Check data.source and data.labels, then re-run data_ingestion and feature_extraction."
        )
    use_flip = params.flip_augment and "train_features_flip" in features
    if params.flip_augment and not use_flip:
        log.info("No mirror-image features in features.npz (feature_extraction.flip_augment=false): training on "
                 "the photos only.")

    flagged = _flagged_paths(params, label_issues)
    if flagged:
        left_out = {s: int((~flagged_mask(features, s, flagged)).sum()) for s in ("train", "val")}
        log.info("head_training.exclude_label_issues: %d train and %d val photo(s) the audit flagged are left out "
                 "of training (%d flagged in all).", left_out["train"], left_out["val"], len(flagged))
        tracking.log_metrics({"head.excluded_label_issues_train": left_out["train"],
                              "head.excluded_label_issues_val": left_out["val"]})

    def samples(splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for split in splits:
            keep = flagged_mask(features, split, flagged)
            xs.append(features[f"{split}_features"][keep])
            ys.append(features[f"{split}_labels"][keep])
            if use_flip and f"{split}_features_flip" in features:
                xs.append(features[f"{split}_features_flip"][keep])
                ys.append(features[f"{split}_labels"][keep])
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)

    rt = setup_runtime(runtime)  # runtime.*: strategy, precision, XLA (parameters_runtime.yml)

    def fit(x: np.ndarray, y: np.ndarray, epochs: int, val: tuple[np.ndarray, np.ndarray] | None):
        set_seed(params.seed)
        class_weight = balanced_class_weights(y, n_classes) if params.class_weight else None
        if (rt.replicas == 1 and keras.config.dtype_policy().compute_dtype == "float32"
                and keras.backend.backend() == "tensorflow"):
            # One compiled call for the whole training (models.headfit, TensorFlow): fit's history,
            # weights and early stop, without its per-epoch Python loop. Other backends: Keras's fit.
            head = build_head(x.shape[1], n_classes, params.dropout, params.l2)
            start = time.perf_counter()
            history = fit_head(
                head, x, y, epochs=epochs, batch_size=params.batch_size, seed=params.seed,
                optimizer=keras.optimizers.Adam(params.learning_rate),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                val=val, patience=params.patience if val is not None else None, class_weight=class_weight)
            log.info("Head: %d epochs in %.1f s.", len(history["loss"]), time.perf_counter() - start)
            return head, history
        with rt.scope():
            head = build_head(x.shape[1], n_classes, params.dropout, params.l2)
            on_logits = trains_on_logits()  # the same weights, scored before the softmax
            trainer = logits_model(head) if on_logits else head
            trainer.compile(
                optimizer=keras.optimizers.Adam(params.learning_rate),
                loss=keras.losses.CategoricalCrossentropy(from_logits=on_logits, label_smoothing=params.label_smoothing),
                metrics=["accuracy"],
                jit_compile=rt.jit_compile,
            )
        callbacks = [_EpochBar(epochs)]
        if val is not None:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=params.patience, restore_best_weights=True))
        batch = rt.global_batch(params.batch_size)  # per replica
        train, steps = array_dataset(x, keras.utils.to_categorical(y, n_classes), batch_size=batch, shuffle=True,
                                     seed=params.seed)
        if val is not None:
            val = rt.shard(array_dataset(val[0], keras.utils.to_categorical(val[1], n_classes), batch_size=batch)[0])
        history = trainer.fit(rt.shard(train), validation_data=val, epochs=epochs, steps_per_epoch=steps,
                           class_weight=class_weight, callbacks=callbacks, verbose=0)
        return head, {k: [float(v) for v in vals] for k, vals in history.history.items()}

    x_train, y_train = samples(("train",))
    has_val = len(features["val_labels"]) > 0
    if not has_val:
        log.warning("No validation features: training all %d epochs without early stopping.", params.epochs)
    val = (features["val_features"].astype(np.float32), features["val_labels"].astype(np.int64)) if has_val else None
    head, hist = fit(x_train, y_train, params.epochs, val)
    best = int(np.argmin(hist["val_loss"])) + 1 if has_val else len(hist["loss"])
    log.info("Head trained for %d epochs on %d samples (best epoch %d, val accuracy %.4f).", len(hist["loss"]),
             len(x_train), best, hist["val_accuracy"][best - 1] if has_val else float("nan"))
    tracking.log_history(hist, prefix="head.")
    tracking.log_metrics({"head.epochs_run": len(hist["loss"]), "head.best_epoch": best})
    if params.refit_on_val and has_val:
        x_all, y_all = samples(("train", "val"))
        log.info("Refitting a fresh head on train + val (%d samples) for %d epochs.", len(x_all), best)
        head, _ = fit(x_all, y_all, best, None)
    return head, hist


def evaluate_head(
    head: Any, features: dict[str, np.ndarray], history: dict[str, list[float]]
) -> tuple[dict[str, Any], Any, Any]:
    """Test-split metrics (accuracy, top-3, per-class P/R/F1, confusion matrix) and the figures."""
    _check_features(features)
    class_names = [str(c) for c in features["class_names"]]
    x_test = features["test_features"].astype(np.float32)
    if len(x_test) == 0:
        raise HeadTrainingError("No test features: set data.split.test above 0 and re-run data_ingestion.")
    probs = predict_array(head, x_test)
    report = classification_report(features["test_labels"], probs, class_names)
    out = {"accuracy": report["accuracy"], "top3_accuracy": report["top3_accuracy"], "n_test": report["n"]}
    if len(features["val_labels"]):
        val = classification_report(features["val_labels"], predict_array(head, features["val_features"]),
                                    class_names)
        out["val_accuracy"] = val["accuracy"]
    out.update({k: v for k, v in report.items() if k not in ("accuracy", "top3_accuracy", "n")})
    out["epochs_run"] = len(history.get("loss", []))
    log.info("Head on the test split: accuracy %.4f, top-3 %.4f (n=%d).", out["accuracy"], out["top3_accuracy"], out["n_test"])
    cm_fig = plots.confusion_matrix(np.asarray(report["confusion_matrix"]), class_names,
                                    title=f"Head on test (accuracy {out['accuracy']:.3f}, n={out['n_test']})")
    curves = plots.training_curves(history, title="Head training (cached features)")
    return out, cm_fig, curves


def _weights_text(weights: Any) -> str:
    """``backbone.weights`` as written in the configs: ``none`` for random weights."""
    return "none" if weights is None or str(weights).strip().lower() in ("", "none", "null", "random") else str(weights)


def _check_same_backbone(cfg: BackboneParams, features: dict[str, np.ndarray]) -> None:
    """The classifier's backbone must be the one the features came from."""
    if "backbone" not in features:
        return
    stored = json.loads(str(np.asarray(features["backbone"]).reshape(-1)[0]))
    now = {"name": cfg.name, "image_size": cfg.size, "alpha": cfg.alpha}
    then = {k: stored.get(k) for k in now}
    same_weights = _weights_text(stored.get("weights")) == _weights_text(cfg.weights)
    if then != now or not same_weights:
        raise HeadTrainingError(
            f"The cached features were made with backbone {then} and weights {stored.get('weights')}, but the "
            f"backbone parameters now say {now} and weights {cfg.weights}. Run "
            "`kedro run --pipelines=feature_extraction,head_training` with the same backbone.* parameters."
        )


def assemble_classifier(
    head: Any, backbone: BackboneParams, features: dict[str, np.ndarray]
) -> tuple[Any, list[str], dict[str, Any]]:
    """Backbone + head as one model (0-255 RGB in, probabilities out), class names, and the
    configuration later pipelines need (input size, backbone, class names, species of each class)."""
    cfg = backbone
    n_features = int(features["train_features"].shape[1])
    if int(head.input_shape[-1]) != n_features:
        raise HeadTrainingError(f"head takes {head.input_shape[-1]} features but the cached ones have {n_features}.")
    _check_same_backbone(cfg, features)
    classifier = build_classifier(cfg, head)
    if int(classifier.get_layer("pool").output.shape[-1]) != n_features:
        raise HeadTrainingError(
            f"backbone {cfg.name} (alpha {cfg.alpha}) gives {classifier.get_layer('pool').output.shape[-1]} features "
            f"but data/04_feature/features.npz holds {n_features}: the features were made with another backbone. "
            "Run `kedro run --pipelines=feature_extraction,head_training` with the same backbone.* parameters."
        )
    class_names = [str(c) for c in features["class_names"]]
    species = [str(s) for s in features["class_species"]] if "class_species" in features else [""] * len(class_names)
    config = {
        "backbone": {"name": cfg.name, "weights": _weights_text(cfg.weights), "image_size": cfg.size, "alpha": cfg.alpha},
        "image_size": cfg.size,
        # how photos become the input (backbone.resize): every pipeline and the served model decode this way
        "resize": cfg.resize,
        "class_names": class_names,
        "class_species": dict(zip(class_names, species)),
        "features_cache_key": str(np.asarray(features.get("cache_key", [""])).reshape(-1)[0]),
    }
    return classifier, class_names, config
