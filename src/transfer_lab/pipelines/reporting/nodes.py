"""Build ``data/08_reporting/report.md`` from the reports the other pipelines wrote."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Mapping


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


def _image(title: str, path: str, report_dir: str) -> str:
    rel = os.path.relpath(path, report_dir)
    return f"![{title}]({rel})" if os.path.exists(path) else f"*({title}: not produced in this run)*"


def build_report(
    ingestion_summary: dict[str, Any],
    feature_extraction_report: dict[str, Any],
    head_metrics: dict[str, Any],
    finetune_metrics: dict[str, Any],
    ideal_images_metrics: dict[str, Any],
    adversarial_metrics: dict[str, Any],
    params: dict[str, Any],
) -> str:
    report_dir = os.path.dirname(params["report_path"])
    images: Mapping[str, Mapping[str, str]] = params.get("images", {})

    def figures(section: str) -> list[str]:
        return [_image(title, path, report_dir) for title, path in (images.get(section) or {}).items()] + [""]

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

    out += ["## 2. Frozen features", ""]
    out += _table(_scalars(feature_extraction_report))
    out += figures("feature_extraction")

    out += ["## 3. Head on frozen features, and 4. fine-tuning", ""]
    rows = []
    for key in ("accuracy", "top3_accuracy", "macro_f1", "n_test"):
        h, f = _get(head_metrics, key), _get(finetune_metrics, key)
        if h is not None or f is not None:
            rows.append(f"| {key} | {_fmt(h)} | {_fmt(f)} |")
    if rows:
        out += ["| test metric | head only | fine-tuned |", "|---|---|---|", *rows, ""]
    out += figures("head_training") + figures("fine_tuning")

    out += ["## 5. Ideal class images", ""]
    classes = _get(ideal_images_metrics, "classes") or {}
    if classes:
        keys = sorted({k for c in classes.values() if isinstance(c, Mapping) for k, v in c.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        out += ["| class | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name, c in classes.items():
            out.append(f"| {name} | " + " | ".join(_fmt(c.get(k)) for k in keys) + " |")
        out.append("")
    out += figures("visualization")

    out += ["## 6. Adversarial examples", ""]
    out += _table(_scalars(adversarial_metrics))
    robust = _get(adversarial_metrics, "robust_accuracy")
    if isinstance(robust, Mapping) and robust:
        out += ["| L-inf budget (0-255) | robust accuracy |", "|---|---|",
                *[f"| {k} | {_fmt(v)} |" for k, v in robust.items()], ""]
    out += figures("adversarial")
    return "\n".join(out) + "\n"
