"""Nodes of the explain pipeline: pick the photos (at once, before any long work), explain each
prediction, and measure how faithful the saved maps are.

The methods live in :mod:`transfer_lab.models.explain`; the folder of maps is
:class:`transfer_lab.io.explanations.ExplanationFolderDataset`.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from transfer_lab.models import explain as ex
from transfer_lab.models.choice import require_classifier, studied_class_names, studied_model
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.explain import ExplainParams

log = logging.getLogger(__name__)

#: Extensions of the photos taken from a folder (the decoder itself reads what is inside).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
#: Photos decoded and explained at a time.
_CHUNK = 64


def _photos_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _test_split(manifest: Callable[[], Any]) -> list[str]:
    from kedro.io import DatasetError

    from transfer_lab.data.manifest import require_columns, without_duplicates

    try:
        table = manifest()
    except DatasetError as exc:
        raise ex.ExplainError(f"explain.source is null, so explain takes the test split of the manifest, and {exc} "
                              "Or give photos: --params \"explain.source=/path/to/photos\".") from None
    require_columns(table)
    table = without_duplicates(table)
    return sorted(str(p) for p in table.loc[table["split"] == "test", "path"])


def select_photos(explain: ExplainParams, manifest: Callable[[], Any], finetuned: Any, head: Any) -> list[str]:
    """The photos to explain: ``explain.source`` (a photo, or every photo under a folder) or the test
    split of the manifest; at most ``explain.max_images`` (a seeded sample, in path order). Fails
    now when the chosen model does not exist yet."""
    require_classifier(explain.model, "explain.model", finetuned=finetuned, head=head)
    if explain.source is None:
        photos, where = _test_split(manifest), "the test split of the manifest"
    elif Path(explain.source).is_file():
        photos, where = [explain.source], explain.source
    else:
        photos, where = _photos_in(Path(explain.source)), explain.source
    if not photos:
        raise ex.ExplainError(f"explain: no photos in {where} (extensions {', '.join(IMAGE_SUFFIXES)}). Give a photo "
                              "or a folder of photos: --params \"explain.source=/path/to/photos\".")
    if explain.max_images is not None and len(photos) > explain.max_images:
        rng = np.random.default_rng(explain.seed)
        keep = np.sort(rng.choice(len(photos), explain.max_images, replace=False))
        photos = [photos[i] for i in keep]
    log.info("explain: %d photo(s) from %s", len(photos), where)
    return photos


def _target_index(target: Any, names: Sequence[str]) -> int | None:
    if target is None:
        return None
    if isinstance(target, int):
        if not 0 <= target < len(names):
            raise ex.ExplainError(f"explain.target={target}: the model has classes 0 to {len(names) - 1}. "
                                  "Give a class name or index, or null for the predicted class.")
        return target
    if str(target) in names:
        return list(names).index(str(target))
    near = difflib.get_close_matches(str(target), list(names), n=5, cutoff=0.5)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    shown = ", ".join(list(names)[:12]) + (", ..." if len(names) > 12 else "")
    raise ex.ExplainError(f"explain.target={target} is not a class of the model.{hint} Classes: {shown}. "
                          "E.g. --params \"explain.target=null\" (the predicted class).")


def unique_names(paths: Sequence[str]) -> list[str]:
    """A file name stem per photo, with as many parent folders as it takes to tell them apart
    (Cat/1.jpg and Dog/1.jpg -> Cat_1, Dog_1)."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    distinct = set(parts)
    depth = 1
    while len({pp[-depth:] for pp in distinct}) < len(distinct) and depth < max(len(pp) for pp in parts):
        depth += 1
    names = ["_".join(pp[-depth:]).lstrip("/_") or "photo" for pp in parts]
    seen: dict[str, int] = {}
    out = []
    for name in names:  # identical paths given twice
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _load(paths: Sequence[str], size: tuple[int, int], resize: str = "squash") -> tuple[list[str], np.ndarray]:
    from transfer_lab.data.imaging import ImageRejected, load_rgb

    kept, images = [], []
    for p in paths:
        try:
            images.append(load_rgb(p, size, resize=resize).astype(np.float32))
            kept.append(p)
        except (ImageRejected, OSError) as exc:
            log.warning("explain: skipped %s (%s)", p, exc)
    return kept, (np.stack(images) if images else np.zeros((0, *size, 3), np.float32))


def explain_photos(photos: list[str], explain: ExplainParams, backbone: BackboneParams, finetuned: Any, head: Any,
                   class_names: Any) -> dict[str, dict[str, Any]]:
    """One map per photo (``explain.method``, ``explain.layer``) for its predicted class or
    ``explain.target``: ``{name: {map, overlay, path, label, probability, ...}}``."""
    model = studied_model(explain.model, "explain.model", backbone, finetuned=finetuned, head=head,
                          image_size=explain.image_size)
    names = studied_class_names(explain.model, backbone, class_names)
    target = _target_index(explain.target, names)
    if explain.method in ex.LAYER_METHODS:
        ex.resolve_layer(model, explain.layer, "explain.layer")
    layer = explain.layer if explain.method in ex.LAYER_METHODS else None
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    out: dict[str, dict[str, Any]] = {}
    labels = dict(zip(photos, unique_names(photos)))
    for i in range(0, len(photos), _CHUNK):
        paths, images = _load(photos[i:i + _CHUNK], size, backbone.resize)
        if not paths:
            continue
        result = ex.explain(model, images, explain.method, layer=layer, classes=target, steps=explain.steps,
                            batch_size=explain.batch_size, seed=explain.seed)
        for path, image, saliency, cls, prob in zip(paths, images, result.maps, result.classes,
                                                    result.probabilities):
            out[labels[path]] = {
                "map": saliency, "overlay": ex.overlay(image, saliency), "path": path, "label": names[int(cls)],
                "probability": round(float(prob), 6), "class_index": int(cls), "method": explain.method,
                "layer": result.layer or "",
            }
    if not out:
        raise ex.ExplainError("explain: none of the photos could be decoded (see the warnings above). Give readable "
                              "photos: --params \"explain.source=/path/to/photos\".")
    log.info("explain: %d map(s) by %s", len(out), explain.method)
    return out


def measure_faithfulness(explanations: dict[str, dict[str, Any]], explain: ExplainParams,
                         backbone: BackboneParams, finetuned: Any, head: Any) -> dict[str, Any]:
    """Deletion test and sanity check of the saved maps (explanations.json, MLflow ``explain.*``)."""
    report: dict[str, Any] = {"method": explain.method, "model": explain.model, "n_photos": len(explanations)}
    if not explain.faithfulness or not explanations:
        return report
    model = studied_model(explain.model, "explain.model", backbone, finetuned=finetuned, head=head,
                          image_size=explain.image_size)
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    entries = list(explanations.values())
    paths, images = _load([str(e["path"]) for e in entries], size)
    kept = {p: e for p, e in zip([str(e["path"]) for e in entries], entries)}
    maps = np.stack([np.asarray(kept[p]["map"], np.float32) for p in paths])
    classes = np.array([int(kept[p]["class_index"]) for p in paths])
    deletion = ex.deletion_test(model, images, maps, classes=classes, fraction=explain.deletion_fraction,
                                seed=explain.seed, batch_size=explain.batch_size)
    layer = explain.layer if explain.method in ex.LAYER_METHODS else None
    sanity = ex.sanity_check(model, images, maps, method=explain.method, layer=layer, classes=classes,
                             blocks=explain.sanity_blocks, steps=explain.steps, seed=explain.seed,
                             batch_size=explain.batch_size)
    report.update(ex.faithfulness_summary(deletion, sanity))
    report["deletion"]["fraction"] = explain.deletion_fraction
    report["sanity"]["blocks"] = explain.sanity_blocks
    report["targets"] = {"sanity_rank_correlation_below": 0.5, "deletion_beats_random_share_at_least": 0.8}
    report["passed"] = {
        "sanity": bool(report["sanity"]["rank_correlation_mean"] < 0.5),
        "deletion": bool(report["deletion"]["beats_random_share"] >= 0.8),
    }
    log.info("explain: deletion beats random on %.0f%% of %d photos; sanity rank correlation mean %.2f",
             100 * report["deletion"]["beats_random_share"], report["n_photos"],
             report["sanity"]["rank_correlation_mean"])
    return report


def explanations_gallery(explanations: dict[str, dict[str, Any]], explain: ExplainParams) -> Any:
    """The explained photos under their maps, one figure for the report
    (data/08_reporting/explanations_gallery.png)."""
    from transfer_lab.reports import plots

    entries = list(explanations.items())
    if not entries:
        fig, ax = plots.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "No photos explained", ha="center", va="center")
        return fig
    titles = [f"{name}\n{e['label']} ({float(e['probability']):.2f})" for name, e in entries]
    return plots.image_grid([e["overlay"] for _, e in entries], titles, ncols=4,
                            suptitle=f"Where the evidence for the predicted class lies ({explain.method}, "
                                     f"{explain.model} model)")
