"""inference: label photos with the chosen classifier through the same Predictor the served
model uses (transfer_lab.serving.predictor), so the CSV and the served answers agree."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_lab.models.choice import pick_classifier, require_classifier
from transfer_lab.params.data import DataParams
from transfer_lab.params.inference import InferenceParams

log = logging.getLogger(__name__)

PARAM = "inference.model"


class InferenceError(ValueError):
    """A source the pipeline cannot read; the message says what to do."""


def read_source(params: InferenceParams, finetuned: Any, head: Any) -> pd.DataFrame:
    """``inference.source`` as rows of (source, data: file bytes or None, error): an image file, every
    file under a folder (sorted), or the base64 ``image`` column of a .csv. Checks first that the
    chosen classifier exists."""
    from transfer_lab.data.imaging import ImageRejected
    from transfer_lab.serving.predictor import b64_bytes

    require_classifier(params.model, PARAM, finetuned=finetuned, head=head)
    if params.source is None:
        raise InferenceError('inference.source is not set: give an image, a folder of images or a .csv of base64 '
                             'images, e.g. kedro run --pipelines=inference --params "inference.source=/path/to/photos".')
    src = Path(params.source)
    rows: list[dict[str, Any]] = []
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts[-1:]))
        rows = [{"source": str(p), "data": p.read_bytes(), "error": ""} for p in files]
    elif src.suffix.lower() == ".csv":
        table = pd.read_csv(src, dtype=str, keep_default_na=False)
        if "image" not in table.columns:
            raise InferenceError(f"{src} has no `image` column (columns: {', '.join(table.columns) or 'none'}). Give "
                                 "a .csv with an `image` column of base64-encoded image files.")
        ids = table["id"] if "id" in table.columns else [f"{src.name}:{i}" for i in range(len(table))]
        for rid, text in zip(ids, table["image"]):
            try:
                rows.append({"source": str(rid), "data": b64_bytes(text), "error": ""})
            except ImageRejected as exc:
                rows.append({"source": str(rid), "data": None, "error": f"{exc.reason}: {exc.detail}"})
    else:
        rows = [{"source": str(src), "data": src.read_bytes(), "error": ""}]
    if not rows:
        raise InferenceError(f"No files found in {src}. Check inference.source.")
    log.info("Inference source %s: %d images.", src, len(rows))
    return pd.DataFrame(rows, columns=["source", "data", "error"])


def label_photos(inputs: pd.DataFrame, stats: dict[str, np.ndarray], config: dict[str, Any],
                 params: InferenceParams, data: DataParams, finetuned: Any, head: Any) -> pd.DataFrame:
    """predictions.csv: source, label, probability, unfamiliar (+ its score), top-k classes and
    probabilities, one probability column per class, and the reason when an image was refused."""
    from transfer_lab.data.imaging import ImageRejected, resize_of
    from transfer_lab.serving.predictor import Predictor, pool_model

    classifier = pick_classifier(params.model, PARAM, finetuned=finetuned, head=head)
    feature_model = pool_model(head()) if params.model == "finetuned" else None
    predictor = Predictor(classifier, stats, config["class_names"], feature_model=feature_model,
                          max_pixels=params.max_pixels or data.max_pixels, top_k=params.top_k,
                          batch_size=params.batch_size, resize=resize_of(config))
    errors = list(inputs["error"])
    arrays, ok = [], []
    for i, blob in enumerate(inputs["data"]):
        if errors[i]:
            continue
        try:
            arrays.append(predictor.decode(blob))
            ok.append(i)
        except ImageRejected as exc:
            errors[i] = f"{exc.reason}: {exc.detail}"
    size = predictor.size
    records = predictor.records(*predictor.predict_arrays(
        np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)))
    by_row = dict(zip(ok, records))
    k, names = predictor.top_k, predictor.class_names
    out = []
    for i, src in enumerate(inputs["source"]):
        r = by_row.get(i)
        row: dict[str, Any] = {"source": src, "label": r["label"] if r else "",
                               "probability": round(r["probability"], 6) if r else np.nan,
                               "unfamiliar": r["unfamiliar"] if r else None,
                               "unfamiliar_score": round(r["unfamiliar_score"], 6) if r else np.nan}
        for j in range(k):
            row[f"top{j + 1}_label"] = r["top_k"][j]["label"] if r else ""
            row[f"top{j + 1}_probability"] = round(r["top_k"][j]["probability"], 6) if r else np.nan
        for c in names:
            row[f"p_{c}"] = round(r["probabilities"][c], 6) if r else np.nan
        row["error"] = errors[i]
        out.append(row)
    table = pd.DataFrame(out)
    n_unf = int(table["unfamiliar"].fillna(False).astype(bool).sum())
    log.info("Labelled %d of %d images (%d unfamiliar, %d refused): data/07_model_output/predictions.csv.",
             len(ok), len(table), n_unf, int((table["error"] != "").sum()))
    return table
