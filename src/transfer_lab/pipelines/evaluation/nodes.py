"""evaluation: score a trained classifier (``evaluation.model``: finetuned | head) on a folder of
new photos, in any layout that data_ingestion reads (same label rules, same decoder)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_lab.data.classes import SPECIES, is_species_model, norm
from transfer_lab.data.imaging import resize_of
from transfer_lab.models.choice import pick_classifier, require_classifier
from transfer_lab.params.evaluation import EvaluationParams

log = logging.getLogger(__name__)

PARAM = "evaluation.model"


class EvaluationError(ValueError):
    """A folder the model cannot be scored on; says what to do."""


def scan_source(
    evaluation: EvaluationParams, model_config: dict[str, Any], finetuned: Any, head: Any,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The photos of ``evaluation.source`` with their labels (empty for unlabelled ones), checked
    first: the chosen classifier exists, the folder is set. ``labels: auto`` becomes what the
    model was trained on (species for a cat/dog model, else breed)."""
    from transfer_lab.data.layouts import LayoutError, scan

    p = evaluation
    require_classifier(p.model, PARAM, finetuned=finetuned, head=head)
    if p.source is None:
        raise EvaluationError(
            "evaluation.source is not set: give the folder of photos to score, e.g. "
            "kedro run --pipelines=evaluation --params \"evaluation.source=/path/to/photos,evaluation.layout=auto\"."
        )
    labels = p.labels
    if labels == "auto":
        labels = "species" if is_species_model([str(c) for c in model_config["class_names"]]) else "breed"
    try:
        files, unlabelled, layout = scan(p.source, p.layout, labels)
    except LayoutError as exc:
        raise EvaluationError(f"{exc} (evaluation.source / evaluation.layout)") from None
    rows = [files[["path", "label", "species"]]]
    if len(unlabelled):
        rows.append(pd.DataFrame({"path": unlabelled["path"], "label": None, "species": None}))
    images = pd.concat(rows, ignore_index=True)
    images["label"] = images["label"].where(images["label"].notna(), "").astype(str)
    images["species"] = images["species"].where(images["species"].notna(), "").astype(str)
    if images.empty:
        raise EvaluationError(f"No files found in {p.source}. Check evaluation.source.")
    info = {"source": p.source, "layout": layout, "labels": labels, "n_files": int(len(images)),
            "resize": resize_of(model_config)}
    log.info("Evaluation folder %s: %d files, layout %s, %s labels, the %s classifier.", p.source, len(images),
             layout, labels, p.model)
    return images, info


def _decode(path: str, size: int, resize: str = "squash") -> np.ndarray | str:
    from transfer_lab.data.imaging import ImageRejected, load_rgb

    try:
        return load_rgb(path, size, resize=resize)
    except ImageRejected as exc:
        return f"{exc.reason}: {exc.detail}"


def predict_images(
    images: pd.DataFrame, evaluation: EvaluationParams, finetuned: Any, head: Any,
    scan_info: dict[str, Any] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Class probabilities for every photo that decodes (same decoder and resize mode as training:
    ``scan_info["resize"]``, from classifier_config.json), batch by batch."""
    from tqdm.auto import tqdm

    from transfer_lab.models.predict import predict_array

    model = pick_classifier(evaluation.model, PARAM, finetuned=finetuned, head=head)
    size = int(model.input_shape[1])
    resize = str((scan_info or {}).get("resize") or "squash")
    paths = images["path"].tolist()
    probs = np.full((len(paths), int(model.output_shape[-1])), np.nan, dtype=np.float32)
    errors = [""] * len(paths)
    bs = evaluation.batch_size
    with ThreadPoolExecutor(max_workers=4) as pool, tqdm(total=len(paths), desc="Scoring", unit="img") as bar:
        for start in range(0, len(paths), bs):
            chunk = list(pool.map(lambda p: _decode(p, size, resize), paths[start:start + bs]))
            ok = [i for i, x in enumerate(chunk) if not isinstance(x, str)]
            for i, x in enumerate(chunk):
                if isinstance(x, str):
                    errors[start + i] = x
            if ok:
                batch = np.stack([chunk[i] for i in ok]).astype(np.float32)
                out = predict_array(model, batch, batch_size=bs).astype(np.float32)
                probs[[start + i for i in ok]] = out
            bar.update(len(chunk))
    scored = images.copy()
    scored["error"] = errors
    return probs, scored


def _label_mapping(labels: list[str], class_names: list[str], class_species: dict[str, str]) -> tuple[str, list[str], dict[str, int], np.ndarray | None]:
    """How the folder's labels meet the model's classes.

    Returns (mode, target class names, label -> target index, class->target matrix or None):
    ``classes`` when labels are the model's classes, ``species`` when a breed model is scored on
    cat/dog labels (breed probabilities summed per species).
    """
    lookup = {norm(c): i for i, c in enumerate(class_names)}
    distinct = sorted(set(labels))
    if not distinct or any(norm(lab) in lookup for lab in distinct):
        return "classes", class_names, {lab: lookup[norm(lab)] for lab in distinct if norm(lab) in lookup}, None
    if all(norm(lab) in SPECIES for lab in distinct) and not is_species_model(class_names):
        species = [norm(class_species.get(c, "")) for c in class_names]
        if all(s in SPECIES for s in species):
            matrix = np.zeros((len(class_names), len(SPECIES)), dtype=np.float32)
            for i, s in enumerate(species):
                matrix[i, SPECIES.index(s)] = 1.0
            return "species", list(SPECIES), {lab: SPECIES.index(norm(lab)) for lab in distinct}, matrix
        raise EvaluationError(
            f"The folder is labelled by species ({', '.join(distinct)}) but the model's classes "
            f"({', '.join(class_names[:8])}{', ...' if len(class_names) > 8 else ''}) have no known species to map "
            "them to. Score a folder labelled with the model's classes, or use evaluation.layout=unlabelled for "
            "predictions only."
        )
    listing = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
    raise EvaluationError(
        f"None of the folder's labels ({', '.join(distinct[:12])}{', ...' if len(distinct) > 12 else ''}) is a class "
        f"of the model ({listing}). Check evaluation.layout and evaluation.labels (breed or species), or use "
        "evaluation.layout=unlabelled to get predictions only."
    )


def report(
    probs: np.ndarray, scored: pd.DataFrame, scan_info: dict[str, Any], model_config: dict[str, Any],
    evaluation: EvaluationParams, finetuned: Any = None, head: Any = None,
) -> tuple[dict[str, Any], pd.DataFrame, Any]:
    """evaluation.json (accuracy, top-3, n, per-class), predictions.csv, worst-mistakes gallery
    (each photo beside its saliency map, when the classifier is given)."""
    from transfer_lab.reports.metrics import classification_report

    class_names = [str(c) for c in model_config["class_names"]]
    class_species = dict(model_config.get("class_species") or {})
    decoded = (scored["error"] == "").to_numpy()
    labelled = (scored["label"] != "").to_numpy()
    if probs.shape[1] != len(class_names):
        raise EvaluationError(
            f"The classifier has {probs.shape[1]} outputs but data/06_models/classifier_config.json lists "
            f"{len(class_names)} classes: they come from different runs. Re-run `kedro run --pipelines=head_training` "
            "(then fine_tuning for evaluation.model=finetuned)."
        )
    labels_present = scored.loc[decoded & labelled, "label"].tolist()
    lookup = {norm(c) for c in class_names}
    has_species = (scored.loc[decoded & labelled, "species"] != "").all() if labels_present else False
    if (is_species_model(class_names) and labels_present and has_species
            and not any(norm(lab) in lookup for lab in labels_present)):
        log.info("The folder has breed labels and the model species classes: scoring by species.")
        scored = scored.copy()
        scored.loc[labelled, "label"] = scored.loc[labelled, "species"]
        labels_present = scored.loc[decoded & labelled, "label"].tolist()
    mode, targets, mapping, matrix = _label_mapping(labels_present, class_names, class_species)
    target_probs = probs @ matrix if matrix is not None else probs

    known = decoded & labelled & scored["label"].map(lambda lab: lab in mapping).to_numpy()
    unknown = scored.loc[decoded & labelled & ~known, "label"].value_counts()
    if len(unknown):
        log.warning("%d photos have labels the model does not know (%s): predicted but left out of the metrics.",
                    int(unknown.sum()), ", ".join(f"{k} ({v})" for k, v in unknown.items()))

    y = scored.loc[known, "label"].map(mapping).to_numpy(np.int64)
    out: dict[str, Any] = {"source": scan_info["source"], "layout": scan_info["layout"], "labels": scan_info["labels"],
                           "model": evaluation.model}
    if known.any():
        rep = classification_report(y, target_probs[known], targets)
        out.update({"accuracy": rep["accuracy"], "top3_accuracy": rep["top3_accuracy"], "n": rep["n"]})
        out.update({k: v for k, v in rep.items() if k not in ("accuracy", "top3_accuracy", "n")})
        log.info("Evaluation on %d labelled photos: accuracy %.4f, top-3 %.4f.", rep["n"], rep["accuracy"], rep["top3_accuracy"])
    else:
        out.update({"accuracy": None, "top3_accuracy": None, "n": 0})
        log.info("No labelled photos: predictions only (data/08_reporting/predictions.csv).")
    out.update({
        "scored_as": "species (breed probabilities summed per species)" if mode == "species" else "model classes",
        "n_files": int(len(scored)),
        "n_predicted": int(decoded.sum()),
        "n_unlabelled": int((decoded & ~labelled).sum()),
        "n_unknown_label": int(unknown.sum()),
        "unknown_labels": {str(k): int(v) for k, v in unknown.items()},
        "n_rejected": int((~decoded).sum()),
        "rejected": [{"path": p, "reason": e} for p, e in scored.loc[~decoded, ["path", "error"]].itertuples(index=False)],
    })

    predictions = _predictions_table(probs, scored, class_names, known, target_probs, targets, mapping, mode)
    model = None if finetuned is None and head is None else (  # loaded only when there are mistakes
        lambda: pick_classifier(evaluation.model, PARAM, finetuned=finetuned, head=head))
    gallery = _mistakes_gallery(predictions[predictions["correct"] == False], evaluation.n_worst, model)  # noqa: E712
    predictions = predictions.drop(columns=[c for c in predictions.columns if c.startswith("_")])
    return out, predictions, gallery


def _predictions_table(probs, scored, class_names, known, target_probs, targets, mapping, mode) -> pd.DataFrame:
    table = scored[["path", "label"]].copy()
    table["error"] = scored["error"]
    k = min(3, len(class_names))
    order = np.argsort(-np.nan_to_num(probs, nan=-1.0), axis=1, kind="stable")[:, :k]
    decoded = (scored["error"] == "").to_numpy()
    for j in range(k):
        table[f"top{j + 1}_class"] = [class_names[order[i, j]] if decoded[i] else "" for i in range(len(table))]
        table[f"top{j + 1}_prob"] = [round(float(probs[i, order[i, j]]), 6) if decoded[i] else np.nan for i in range(len(table))]
    if mode == "species":
        pred_species = np.argmax(np.nan_to_num(target_probs, nan=-1.0), axis=1)
        table["predicted_species"] = [targets[s] if decoded[i] else "" for i, s in enumerate(pred_species)]
        predicted = table["predicted_species"]
        confidence = np.nanmax(np.where(np.isnan(target_probs), -1, target_probs), axis=1)
    else:
        predicted = table["top1_class"]
        confidence = table["top1_prob"].to_numpy()
    truth = [targets[mapping[lab]] if known[i] else "" for i, lab in enumerate(scored["label"])]
    table["correct"] = [(truth[i] == predicted.iloc[i]) if known[i] else None for i in range(len(table))]
    table["confidence"] = confidence
    table["_truth"] = truth
    table["_predicted"] = predicted.tolist()
    return table


def _mistakes_gallery(mistakes: pd.DataFrame, n_worst: int, model: Any = None) -> Any:
    """The most confident wrong predictions, with their true and predicted classes; with ``model``
    (a classifier, or a callable that loads it) each photo beside its map for the predicted class
    (explain's default method, transfer_lab.models.explain: where the evidence for it lies)."""
    from transfer_lab.data.imaging import load_rgb
    from transfer_lab.models import explain as ex
    from transfer_lab.reports import plots

    worst = mistakes.sort_values("confidence", ascending=False, kind="stable").head(n_worst)
    if worst.empty:
        fig, ax = plots.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "No mistakes on the labelled photos", ha="center", va="center")
        return fig
    titles = [f"{Path(p).name}\ntrue {t}\npred {q} ({c:.2f})"
              for p, t, q, c in worst[["path", "_truth", "_predicted", "confidence"]].itertuples(index=False)]
    maps = None
    if model is not None:
        try:
            net = model() if callable(model) and not hasattr(model, "input_shape") else model
            images = [load_rgb(p, int(net.input_shape[1])) for p in worst["path"]]
            result = ex.explain(net, np.stack(images).astype(np.float32))
            maps = result.maps
        except ex.ExplainError as exc:
            log.warning("Worst-mistakes gallery without saliency maps: %s", exc)
    if maps is None:
        images = [load_rgb(p, 160) for p in worst["path"]]
        return plots.image_grid(images, titles, ncols=4, suptitle=f"Worst mistakes ({len(worst)} most confident)",
                                title_colors=["red"] * len(titles))
    cells, cell_titles = [], []
    for image, saliency, title, top1 in zip(images, maps, titles, worst["top1_class"]):
        cells += [image, ex.overlay(image, saliency)]
        cell_titles += [title, f"evidence for {top1}\n({result.method})"]
    return plots.image_grid(cells, cell_titles, ncols=4, cell=2.4,
                            suptitle=f"Worst mistakes ({len(worst)} most confident), each beside its saliency map",
                            title_colors=["red", "black"] * len(worst))


# ------------------------------------------------------------------------------------------
# The unfamiliar-photo flag on the scored photos (issue 16: models.unfamiliar, fitted by serving)


def flag_unfamiliar(scored: pd.DataFrame, stats: Any, evaluation: EvaluationParams, head: Any) -> tuple[dict[str, Any], Any]:
    """``n_unfamiliar`` (photos unlike every training photo, on head_training's features, which the
    statistics were fitted on) and a gallery of the flagged photos, strangest first. Without
    data/06_models/unfamiliar.npz (run serving) n_unfamiliar is null."""
    from transfer_lab.models import unfamiliar
    from transfer_lab.models.predict import predict_array
    from transfer_lab.reports import plots
    from transfer_lab.serving.predictor import pool_model

    decoded = (scored["error"] == "").to_numpy()
    if stats is None or not stats.exists() or not head.exists() or not decoded.any():
        fig, ax = plots.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "No unfamiliar-photo statistics (run serving)" if decoded.any() else "No photos",
                ha="center", va="center")
        return {"n_unfamiliar": None, "unfamiliar": []}, fig
    model = pool_model(head())
    size = int(model.input_shape[1])
    paths = scored.loc[decoded, "path"].tolist()
    x = np.stack([_decode(p, size) for p in paths]).astype(np.float32)
    flags, scores = unfamiliar.flag(stats(), predict_array(model, x, batch_size=evaluation.batch_size))
    flagged = sorted(((float(s), p) for p, f, s in zip(paths, flags, scores) if f), reverse=True)
    out = {"n_unfamiliar": int(flags.sum()), "unfamiliar_share": float(flags.mean()),
           "unfamiliar": [{"path": p, "score": round(s, 6)} for s, p in flagged]}
    log.info("Unfamiliar photos: %d of %d.", out["n_unfamiliar"], len(paths))
    shown = flagged[: max(evaluation.n_worst, 1)]
    if not shown:
        fig, ax = plots.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"No unfamiliar photos among {len(paths)}", ha="center", va="center")
        return out, fig
    from transfer_lab.data.imaging import load_rgb

    return out, plots.image_grid([load_rgb(p, 160) for _, p in shown],
                                 [f"{Path(p).name}\nscore {s:.3f}" for s, p in shown], ncols=4,
                                 suptitle=f"Unfamiliar photos ({len(flagged)} of {len(paths)} flagged)")
