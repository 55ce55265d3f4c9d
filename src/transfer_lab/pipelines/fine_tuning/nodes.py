"""fine_tuning: start from head_training's classifier, unfreeze the top of the backbone (BatchNorm
kept frozen), recompile with a low learning rate, train with augmentation, early stopping and
learning-rate reduction, resumable after a crash; then compare with the head-only model."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from transfer_lab.data.imaging import resize_of
from transfer_lab.data.manifest import split_data
from transfer_lab.data.pixels import cached_pixels, pixel_cache_folder
from transfer_lab.data.tfdata import balanced_class_weights, eval_dataset, train_dataset
from transfer_lab.io import tracking
from transfer_lab.models.backbones import backbone_of
from transfer_lab.models.predict import predict, predict_array
from transfer_lab.models.training import (
    FineTuneError,
    TqdmProgress,
    backup_key,
    compile_for_fine_tuning,
    trains_on_logits,
    fit_resumable,
    training_model,
    weights_fingerprint,
)
from transfer_lab.models.unfreeze import refreeze, resolve_unfreeze, unfreeze_top
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.fine_tuning import FineTuningParams
from transfer_lab.params.head_training import HeadTrainingParams
from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.reports import plots
from transfer_lab.reports.metrics import classification_report
from transfer_lab.runtime.cluster import worker_path
from transfer_lab.runtime.devices import set_seed
from transfer_lab.runtime.strategy import setup_runtime

log = logging.getLogger(__name__)

#: Scalar metrics of transfer_lab.reports.metrics.classification_report compared head-only vs fine-tuned.
COMPARED = ("accuracy", "mean_per_class_accuracy", "top3_accuracy", "macro_f1")


def fine_tune(
    head_classifier: Any,
    manifest: pd.DataFrame,
    class_names: list[str],
    classifier_config: dict[str, Any],
    cfg: FineTuningParams,
    backbone: BackboneParams,
    head_training: HeadTrainingParams,
    runtime: RuntimeParams,
) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Fine-tune head_training's classifier (its file stays as it is: the catalog writes the result
    as finetuned_classifier); returns the fine-tuned classifier (best validation epoch), its
    per-epoch history and a training summary.

    First, before any work: ``fine_tuning.unfreeze`` must fit the classifier's backbone (so many
    blocks or layers, or a layer of that name)."""
    backbone_name = str((classifier_config or {}).get("backbone", {}).get("name") or backbone.name)
    if backbone_name != backbone.name:
        log.warning("The classifier was built on %s but backbone.name is %s: unfreezing by %s's blocks.",
                    backbone_name, backbone.name, backbone_name)
    selection = resolve_unfreeze(backbone_of(head_classifier), backbone_name, cfg.unfreeze)
    log.info("fine_tuning: unfreezing %s (BatchNorm stays frozen), learning rate %g.", selection["description"],
             cfg.learning_rate)
    if head_training.refit_on_val:
        log.info(
            "head_training.refit_on_val is true: the head-only classifier was refitted on train + val, so the "
            "validation photos that fine-tuning monitors (early stopping, learning-rate reduction, best epoch) "
            "are not unseen. For a clean validation signal run head_training with "
            "--params head_training.refit_on_val=false before fine_tuning."
        )
    set_seed(cfg.seed)
    rt = setup_runtime(runtime)  # runtime.*: strategy, precision, XLA (parameters_runtime.yml)
    model = rt.replicate(head_classifier, copy=True)  # a copy, in the strategy's scope when distributed
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise FineTuneError(
            f"The classifier has {n_out} outputs but class_names lists {len(class_names)} classes. "
            "Re-run `kedro run --pipelines=head_training`."
        )
    data = split_data(manifest, class_names)
    size = int(model.input_shape[1])
    start_fp = weights_fingerprint(model)

    with rt.scope():
        selection = unfreeze_top(model, backbone_name, cfg.unfreeze)
        log.info("Unfroze %s: %d of %d parameters trainable, %d BatchNorm layers kept frozen.",
                 selection["description"], selection["trainable_params"], selection["total_params"],
                 selection["n_batchnorm_frozen"])
        trainer = training_model(model, cfg.augmentation, cfg.seed)
        compile_for_fine_tuning(trainer, cfg.learning_rate,
                                cfg.jit_compile if cfg.jit_compile != "auto" else rt.jit_compile,
                                backbone=backbone_of(model), backbone_lr_mult=cfg.backbone_lr_mult,
                                label_smoothing=cfg.label_smoothing, from_logits=trains_on_logits())
    batch = rt.global_batch(cfg.batch_size)  # fine_tuning.batch_size is per replica

    train_paths, train_y = data["train"]
    val_paths, val_y = data["val"]
    key = backup_key(cfg.model_dump(mode="json"), backbone_name, head_training.refit_on_val, start_fp, size, list(class_names), train_paths, train_y.tolist(), val_paths, val_y.tolist())
    backup = str(worker_path(f"{cfg.backup_dir.rstrip('/')}/{key}", rt))  # non-chief workers: a private folder
    # Decoded once (runtime.pixel_cache; feature_extraction filled it at this size): no decoding per epoch.
    folder = pixel_cache_folder(runtime, rt)
    resize = resize_of(classifier_config)  # decoded as the features were (backbone.resize)
    train_px, val_px = cached_pixels(train_paths, size, folder, resize), cached_pixels(val_paths, size, folder, resize)
    train_ds = rt.shard(train_dataset(train_paths, train_y, image_size=size, batch_size=batch, seed=cfg.seed,
                                      cache=cfg.cache_images, pixels=train_px, resize=resize))
    val_ds = rt.shard(eval_dataset(val_paths, val_y, image_size=size, batch_size=batch, cache=cfg.cache_images,
                                   pixels=val_px, resize=resize))
    steps = int(np.ceil(len(train_paths) / batch))
    log.info("Fine-tuning on %d train / %d val photos at %d px, up to %d epochs (backup %s).",
             len(train_paths), len(val_paths), size, cfg.epochs, backup)
    class_weight = balanced_class_weights(train_y, len(class_names)) if cfg.class_weight else None
    info = fit_resumable(trainer, train_ds, val_ds, cfg, backup, class_weight=class_weight,
                         extra_callbacks=[TqdmProgress(steps, cfg.epochs)], verbose=0)
    history = info.pop("history")
    tracking.log_history(history, prefix="finetune.epoch.")

    refreeze(model)
    secs = info["epoch_seconds"]
    train_secs = info["train_seconds"]
    # the first epoch also decodes the photos and compiles the graph: time the later ones when there are
    steady = train_secs[1:] or train_secs
    summary = {
        "unfreeze": str(cfg.unfreeze),
        "unfrozen_layers": selection["n_layers"],
        "first_unfrozen_layer": selection["first_layer"],
        "unfrozen_blocks": selection["blocks"],
        "batchnorm_frozen": selection["n_batchnorm_frozen"],
        "trainable_params": selection["trainable_params"],
        "learning_rate": cfg.learning_rate,
        "final_learning_rate": float(history.get("learning_rate", [cfg.learning_rate])[-1]),
        "augmentation": cfg.augmentation.model_dump(),
        "image_size": size,
        "resize": resize,
        "n_train": len(train_paths),
        "n_val": len(val_paths),
        "epochs_run": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "stopped_early": info["stopped_early"],
        "resumed_from_epoch": info["resumed_from_epoch"],
        "seconds_per_epoch": float(np.median(secs)) if secs else float("nan"),
        "train_seconds_per_epoch": float(np.median(steady)) if steady else float("nan"),
        "train_images_per_second": float(len(train_paths) / np.median(steady)) if steady else float("nan"),
        "epoch_seconds": [float(s) for s in secs],
        "train_seconds": [float(s) for s in train_secs],
    }
    return model, history, summary


def _head_report(head_metrics: dict[str, Any] | None, class_names: list[str], n_test: int) -> dict[str, Any] | None:
    """head_training's test report when it covers these test photos and classes, else None."""
    m = dict(head_metrics or {})
    per_class = m.get("per_class") or {}
    if m.get("n_test") != n_test or not all(c in per_class and "recall" in per_class[c] for c in class_names):
        return None
    if "mean_per_class_accuracy" not in m:  # a report written before the metric existed
        recalls = [per_class[c]["recall"] for c in class_names if per_class[c].get("support", 1)]
        m["mean_per_class_accuracy"] = float(np.mean(recalls)) if recalls else float("nan")
    return m if all(k in m for k in COMPARED) else None


def _scalars(report: dict[str, Any]) -> dict[str, float]:
    return {k: float(report[k]) for k in COMPARED if k in report}


def evaluate(
    head_classifier: Any,
    finetuned_classifier: Any,
    manifest: pd.DataFrame,
    class_names: list[str],
    cfg: FineTuningParams,
    summary: dict[str, Any],
    history: dict[str, list[float]],
    head_metrics: dict[str, Any],
    runtime: RuntimeParams | None = None,
) -> tuple[dict[str, Any], dict[str, Any], str, Any, Any, Any]:
    """Test metrics of the fine-tuned model (same report as head_training) and the head-only
    model on the same test photos, side by side: JSON, markdown table, figures.

    The test photos come from the decoded-pixel cache (``runtime.pixel_cache``, filled by
    feature_extraction): decoded once for both models, not once per model."""
    data = split_data(manifest, class_names)
    paths, y = data["test"]
    if not paths:
        raise FineTuneError("The manifest has no test photos: check data.split in parameters_data_ingestion.yml.")
    size = int(finetuned_classifier.input_shape[1])
    t0 = time.perf_counter()
    resize = str(summary.get("resize") or "squash")  # as fine_tune decoded (classifier_config.json)
    pixels = cached_pixels(paths, size, pixel_cache_folder(runtime), resize) if runtime is not None else None
    # head_training's own test report (the head on the cached features of these photos) is the
    # head-only figure: the head's forward pass is not run twice
    head_report = _head_report(head_metrics, class_names, len(paths))
    if head_report is None:
        head_probs = (predict_array(head_classifier, pixels, batch_size=cfg.batch_size) if pixels is not None else
                      predict(head_classifier, paths, image_size=size, batch_size=cfg.batch_size,
                              desc="Test (head only)", resize=resize))
        head_report = classification_report(y, head_probs, class_names)
    ft_probs = (predict_array(finetuned_classifier, pixels, batch_size=cfg.batch_size) if pixels is not None else
                predict(finetuned_classifier, paths, image_size=size, batch_size=cfg.batch_size,
                        desc="Test (fine-tuned)", resize=resize))
    ft_report = classification_report(y, ft_probs, class_names)
    metrics = {**ft_report, "fine_tuning": dict(summary)}

    head_s, ft_s = _scalars(head_report), _scalars(ft_report)
    comparison = {
        "head_only": head_s,
        "fine_tuned": ft_s,
        "change": {k: ft_s[k] - head_s[k] for k in ft_s if k in head_s},
        "n_test": len(paths),
        "head_training_reported": _scalars(head_metrics or {}),
    }
    reported = comparison["head_training_reported"].get("accuracy")
    if reported is not None and abs(reported - head_s.get("accuracy", reported)) > 1e-6:
        log.warning("head_metrics.json says head-only test accuracy %.4f, re-measured here %.4f (other test photos or "
                    "image size?). The comparison uses the re-measured figure.", reported, head_s["accuracy"])
    log.info("Test accuracy on %d photos: head only %.4f, fine-tuned %.4f (%+.4f) in %.0f s.", len(paths),
             head_s["accuracy"], ft_s["accuracy"], comparison["change"]["accuracy"], time.perf_counter() - t0)

    table = comparison_markdown(comparison, summary)
    cm_fig = plots.confusion_matrix(np.asarray(ft_report["confusion_matrix"]), class_names,
                                    title=f"Fine-tuned: test accuracy {ft_s['accuracy']:.3f} (n={len(paths)})")
    curves = plots.training_curves(history, title=f"Fine-tuning ({summary['unfrozen_layers']} backbone layers unfrozen, "
                                                  f"lr {summary['learning_rate']:g})")
    compare_fig = comparison_figure(comparison, head_report, ft_report, class_names)
    return metrics, comparison, table, cm_fig, curves, compare_fig


def comparison_markdown(comparison: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = [
        f"# Head only vs fine-tuned (test set, n={comparison['n_test']})",
        "",
        "| metric | head only | fine-tuned | change |",
        "|---|---:|---:|---:|",
    ]
    for k in COMPARED:
        if k in comparison["fine_tuned"] and k in comparison["head_only"]:
            lines.append(f"| {k} | {comparison['head_only'][k]:.4f} | {comparison['fine_tuned'][k]:.4f} | "
                         f"{comparison['change'][k]:+.4f} |")
    lines += [
        "",
        f"Fine-tuning: {summary['unfrozen_layers']} backbone layers unfrozen (from `{summary['first_unfrozen_layer']}`; "
        f"{summary['batchnorm_frozen']} BatchNorm layers frozen), learning rate {summary['learning_rate']:g} -> "
        f"{summary['final_learning_rate']:g}, {summary['epochs_run']} epochs (best {summary['best_epoch']}), "
        f"{summary['n_train']} train photos at {summary['image_size']} px, "
        f"{summary['seconds_per_epoch']:.1f} s/epoch.",
        "",
    ]
    return "\n".join(lines)


def comparison_figure(comparison: dict[str, Any], head_report: dict[str, Any], ft_report: dict[str, Any],
                      class_names: list[str]) -> Any:
    """Bars of the compared metrics, and per-class recall head-only vs fine-tuned."""
    from transfer_lab.reports.plots import subplots

    keys = [k for k in COMPARED if k in comparison["fine_tuned"]]
    n = len(class_names)
    fig, axes = subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 2.2]})
    x = np.arange(len(keys))
    for off, name, label in ((-0.2, "head_only", "head only"), (0.2, "fine_tuned", "fine-tuned")):
        vals = [comparison[name][k] for k in keys]
        bars = axes[0].bar(x + off, vals, width=0.4, label=label)
        for b, v in zip(bars, vals):
            axes[0].text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    axes[0].set_xticks(x)
    axes[0].set_xticklabels(keys)
    lo = min(min(comparison[s][k] for k in keys) for s in ("head_only", "fine_tuned"))
    axes[0].set_ylim(max(0.0, lo - 0.1), 1.0)
    axes[0].legend(loc="lower right")
    axes[0].set_title(f"Test set (n={comparison['n_test']})")
    rec_h = [head_report["per_class"][c]["recall"] for c in class_names]
    rec_f = [ft_report["per_class"][c]["recall"] for c in class_names]
    xi = np.arange(n)
    axes[1].bar(xi - 0.2, rec_h, width=0.4, label="head only")
    axes[1].bar(xi + 0.2, rec_f, width=0.4, label="fine-tuned")
    axes[1].set_xticks(xi)
    axes[1].set_xticklabels(class_names, rotation=90, fontsize=6 if n > 10 else 9)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("Recall per class")
    axes[1].legend(loc="lower right")
    fig.suptitle("Head only vs fine-tuned")
    fig.tight_layout()
    return fig
