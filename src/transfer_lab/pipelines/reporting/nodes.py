"""Build the report folder (report.md and the figures it embeds) from what the other pipelines wrote."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

#: Which entry of adversarial's figure folder (adversarial_figures) the report shows, by key.
ADVERSARIAL_FIGURES = {"grid": "adversarial examples", "robust_accuracy": "robustness curve"}


def _get(d: Mapping[str, Any] | None, path: str, default: Any = None) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    rows = [(k, v) for k, v in rows if v is not None]
    if not rows:
        return []
    return ["| figure | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in rows], ""]


def _scalars(d: Mapping[str, Any] | None, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    if not isinstance(d, Mapping):
        return []
    return [(k, v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip]


class ReportFigures:
    """The figures a report embeds: each becomes ``<name>.png`` in the report folder, linked from the
    Markdown by that name, so no link can point at a file the report does not hold."""

    def __init__(self) -> None:
        self.files: dict[str, Any] = {}

    def add(self, name: str, title: str, image: Any) -> str:
        if image is None:
            raise ValueError(f"The report's figure {title!r} ({name}) is missing: run the pipeline that writes it.")
        self.files[f"{name}.png"] = image
        return f"![{title}]({name}.png)"


def _adversarial(figures: Mapping[str, Any], key: str) -> Any:
    if key not in figures:
        raise KeyError(f"adversarial_figures has no {key!r} figure (it has: {', '.join(sorted(figures)) or 'none'}); "
                       "the report shows it: run `kedro run --pipelines=adversarial` again.")
    return figures[key]


def build_report(
    ingestion_summary: dict[str, Any],
    feature_extraction_report: dict[str, Any],
    audit_report: dict[str, Any],
    head_metrics: dict[str, Any],
    finetune_metrics: dict[str, Any],
    unfamiliar_summary: dict[str, Any],
    serving_model_info: dict[str, Any],
    explanations_report: dict[str, Any],
    ideal_images_metrics: dict[str, Any],
    adversarial_metrics: dict[str, Any],
    feature_maps_figure: Any,
    label_issues_gallery: Any,
    outliers_gallery: Any,
    head_confusion_matrix: Any,
    head_training_curves: Any,
    finetune_confusion_matrix: Any,
    finetune_curves: Any,
    finetune_comparison_figure: Any,
    explanations_gallery: Any,
    ideal_images_grid: Any,
    adversarial_figures: Mapping[str, Any],
    run_timings: Any = None,
    export_report: Any = None,
) -> dict[str, Any]:
    """The report folder: ``report.md`` and every figure it embeds (figures are catalog inputs, so a
    figure that was not written fails the run, naming the dataset and the pipeline that writes it)."""
    fig = ReportFigures()
    out = [
        "# transfer-lab: report of the run",
        "",
        f"Written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. Data: `{_get(ingestion_summary, 'source')}` "
        f"(layout {_get(ingestion_summary, 'layout')}, labels {_get(ingestion_summary, 'labels')}). "
        "Every figure here is also in the MLflow run (`kedro mlflow ui`).",
        "",
        "## 1. Data",
        "",
    ]
    out += _table([
        ("accepted images", _get(ingestion_summary, "n_images")),
        ("classes", _get(ingestion_summary, "n_classes")),
        ("train / val / test", " / ".join(str(_get(ingestion_summary, f"split_counts.{s}", 0)) for s in ("train", "val", "test"))),
        ("exact duplicates (kept in one split)", _get(ingestion_summary, "n_duplicates")),
        ("rejected files", _get(ingestion_summary, "n_rejected")),
    ])
    rejected = _get(ingestion_summary, "rejected_counts") or {}
    if rejected:
        out += ["Rejected, by reason: " + ", ".join(f"{k} {v}" for k, v in rejected.items()) +
                " (see `rejected_images.csv`).", ""]

    out += ["### Audit: near-duplicates, likely label errors, outliers", ""]
    out += _table([(k.replace("_", " "), v) for k, v in _scalars(audit_report)])
    out += ["Lists: `near_duplicates.csv` (ingestion; copies kept in one split), `audit_near_duplicates.csv` "
            "(also found in feature space), `label_issues.csv` (most likely first), `outliers.csv`.", "",
            fig.add("label_issues", "likely label errors", label_issues_gallery),
            fig.add("outliers", "outliers", outliers_gallery), ""]

    out += ["## 2. Frozen features", ""]
    out += _table(_scalars(feature_extraction_report))
    out += [fig.add("feature_maps", "feature maps", feature_maps_figure), ""]

    out += ["## 3. Head on frozen features, and 4. fine-tuning", ""]
    rows = []
    for key in ("accuracy", "mean_per_class_accuracy", "top3_accuracy", "macro_f1", "n_test"):
        h, f = _get(head_metrics, key), _get(finetune_metrics, key)
        if h is not None or f is not None:
            rows.append(f"| {key} | {_fmt(h)} | {_fmt(f)} |")
    if rows:
        out += ["| test metric | head only | fine-tuned |", "|---|---|---|", *rows, ""]
    out += [fig.add("head_confusion_matrix", "head confusion matrix", head_confusion_matrix),
            fig.add("head_training_curves", "head training curves", head_training_curves),
            fig.add("finetune_confusion_matrix", "fine-tuned confusion matrix", finetune_confusion_matrix),
            fig.add("finetune_curves", "fine-tuning curves", finetune_curves),
            fig.add("finetune_comparison", "head only vs fine-tuned", finetune_comparison_figure), ""]

    out += ["### Serving: the registered model and its unfamiliar-photo flag", ""]
    out += _table([("served model", _get(serving_model_info, "model")),
                   ("registered as", _get(serving_model_info, "registered_model_name")),
                   ("version", _get(serving_model_info, "version")),
                   ("champion version", _get(serving_model_info, "champion")),
                   ("its test accuracy", _get(serving_model_info, "test_accuracy")),
                   ("unfamiliar flag: method", _get(unfamiliar_summary, "method")),
                   ("threshold", _get(unfamiliar_summary, "threshold")),
                   ("validation photos flagged", _get(unfamiliar_summary, "val_flagged")),
                   ("test photos flagged", _get(unfamiliar_summary, "test_flagged"))])
    if _get(serving_model_info, "logged"):
        name = _get(serving_model_info, "registered_model_name")
        out += [f"Serve it: `mlflow models serve -m models:/{name}@champion --env-manager local`, then POST "
                "`{\"dataframe_records\": [{\"image\": \"<base64 of a JPEG/PNG>\"}]}` to /invocations.", ""]

    out += ["## Explanations (Grad-CAM and attributions)", ""]
    out += _table([("photos explained", _get(explanations_report, "n_photos")),
                   ("method", _get(explanations_report, "method")),
                   ("deletion test: beats random on", _get(explanations_report, "deletion.beats_random_share")),
                   ("sanity check: rank correlation with randomised weights",
                    _get(explanations_report, "sanity.rank_correlation_mean")),
                   ("deletion test passed (>= 0.8)", _get(explanations_report, "passed.deletion")),
                   ("sanity check passed (< 0.5)", _get(explanations_report, "passed.sanity"))])
    out += ["Raw maps (.npy) and overlays: `explanations/` with its index `explanations.csv`.", "",
            fig.add("explanations", "explanations", explanations_gallery), ""]

    out += ["## 5. Ideal class images", ""]
    classes = _get(ideal_images_metrics, "classes") or {}
    if classes:
        keys = sorted({k for c in classes.values() if isinstance(c, Mapping) for k, v in c.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        out += ["| class | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name, c in classes.items():
            out.append(f"| {name} | " + " | ".join(_fmt(c.get(k)) for k in keys) + " |")
        out.append("")
    out += [fig.add("ideal_images_grid", "ideal images", ideal_images_grid), ""]

    out += ["## 6. Adversarial examples", ""]
    out += _table(_scalars(adversarial_metrics))
    robust = _get(adversarial_metrics, "robust_accuracy")
    if isinstance(robust, Mapping) and robust:
        out += ["| L-inf budget (0-255) | robust accuracy |", "|---|---|",
                *[f"| {k} | {_fmt(v)} |" for k, v in robust.items()], ""]
    out += [fig.add(f"adversarial_{key}", title, _adversarial(adversarial_figures, key))
            for key, title in ADVERSARIAL_FIGURES.items()] + [""]
    out += _export(export_report)
    out += _timings(run_timings)
    return {"report.md": "\n".join(out) + "\n", **fig.files}


def _loaded(entry: Any) -> Any:
    """A lazily read report: ``None`` when its file does not exist yet (a deferred load or the dict)."""
    if entry is None or (hasattr(entry, "exists") and not entry.exists()):
        return None
    return entry() if callable(entry) else entry


def _export(export_report: Any) -> list[str]:
    """The exported files' parity with the Keras model (the export pipeline, run on its own)."""
    report = _loaded(export_report)
    if not report:
        return []
    lines = ["## Export", "", f"`{_get(report, 'model')}` classifier, parity on {_get(report, 'n_test')} test photos "
             "(`kedro run --pipelines=export`; also `export.*` in MLflow).", "",
             "| format | size (MB) | top-1 agreement with Keras | largest probability difference | ms a photo |",
             "|---|---|---|---|---|", f"| Keras | | | | {_fmt(_get(report, 'keras.latency_ms'))} |"]
    for name in ("saved_model", "tflite_fp32", "tflite_int8"):
        r = _get(report, name)
        if isinstance(r, Mapping):
            lines.append(f"| {name} | {float(r.get('size_bytes', 0)) / 1e6:.1f} | {_fmt(r.get('top1_agreement'))} | "
                         f"{_fmt(r.get('max_prob_diff'))} | {_fmt(r.get('latency_ms'))} |")
    return lines + [""]


def _timings(run_timings: Any) -> list[str]:
    """Seconds per pipeline of the run (the project hook's run_timings; a deferred load or the dict)."""
    timings = _loaded(run_timings)
    if not timings:
        return []
    per = _get(timings, "pipeline_s") or {}
    if not per:
        return []
    lines = ["## Time", "", f"Wall-clock seconds per pipeline of the run started {_get(timings, 'started')} "
             "(Kedro's start-up not included; also in MLflow as `time.pipeline_s.<pipeline>`).", "",
             "| pipeline | seconds |", "|---|---|"]
    lines += [f"| {name} | {float(sec):.1f} |" for name, sec in per.items()]
    lines += [f"| all nodes, start to end | {float(_get(timings, 'total_s', sum(per.values()))):.1f} |", ""]
    return lines
