"""Nodes of the visualization pipeline: resolve the classes and layers (at once, before any long
work), draw feature maps of chosen layers for one photo, and generate one "ideal" image per class.

The parameters arrive validated (:class:`~transfer_lab.params.visualization.VisualizationParams`);
the optimisation lives in :mod:`transfer_lab.models.ideal`, feature maps in
:mod:`transfer_lab.models.featuremaps` and :func:`transfer_lab.reports.plots.feature_maps`; the
model is chosen by :mod:`transfer_lab.models.choice` (as adversarial chooses it).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from transfer_lab.data import classes as vocab
from transfer_lab.models import choice
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.visualization import VisualizationParams

log = logging.getLogger(__name__)

PARAM = "visualization.model"


def _model(params: VisualizationParams, backbone: BackboneParams, finetuned: Any, head: Any) -> Any:
    return choice.studied_model(params.model, PARAM, backbone, finetuned=finetuned, head=head,
                                image_size=params.image_size)


def _species(params: VisualizationParams, manifest: Any) -> dict[str, str]:
    """``{class: species}`` from the manifest (a trained classifier; none when it is missing)."""
    if params.model == "imagenet" or manifest is None or not manifest.exists():
        return {}
    return vocab.species_of(manifest())


def resolve_targets(
    visualization: VisualizationParams,
    backbone: BackboneParams,
    class_names: Any,
    finetuned: Any,
    head: Any,
    manifest: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What needs the model, checked before any long work: the classes (names, indices, their
    ImageNet counterparts for the second model) and the feature maps' photo and layers (``{}``:
    no feature maps; Kedro saves no ``None``).

    A class is a name or index of the model, or a group: on ImageNet ``cat`` (281-285) and
    ``dog`` (151-268); on a breed classifier ``cat`` / ``dog`` = every breed of that species (from
    the manifest's species column, when the manifest exists).
    """
    from transfer_lab.models.featuremaps import resolve_layer_names

    p = visualization
    choice.require_classifier(p.model, PARAM, finetuned=finetuned, head=head)
    names = choice.studied_class_names(p.model, backbone, class_names)
    species = _species(p, manifest)
    groups = vocab.species_groups(species, names)
    targets: list[dict[str, Any]] = []
    for item in p.classes:
        idx = list(vocab.class_set(item, names, "visualization.classes", groups=groups or None))
        name = names[idx[0]] if len(idx) == 1 else vocab.norm(item)
        if name not in [t["name"] for t in targets]:
            targets.append({"name": name, "indices": idx, "members": [names[i] for i in idx], "imagenet": None})

    if p.second_model is not None:
        from transfer_lab.models.backbones import imagenet_class_names

        inames = imagenet_class_names(p.second_model.labels or backbone.imagenet_labels)
        for t in targets:
            members = [t["name"]] if p.model == "imagenet" or t["name"] in p.second_model.class_map else t["members"]
            idx, how = vocab.imagenet_set(members, inames, species=species, class_map=p.second_model.class_map,
                                          param="visualization.second_model.class_map")
            t["imagenet"] = {"indices": idx, "names": [inames[i] for i in idx], "mapped_by": how}
            if not idx:
                log.warning("visualization: class %r has no ImageNet counterpart for the second model; add it to "
                            "visualization.second_model.class_map to check it.", t["name"])

    layers: dict[str, Any] = {}
    fm = p.feature_maps
    photo = fm.image if fm is not None else None
    if photo == "auto":
        photo = _first_test_photo(manifest)
    if fm is not None and photo:
        model = _model(p, backbone, finetuned, head)  # a few seconds; checks the layers before any long work
        layers = {"image": photo, "layers": resolve_layer_names(model, fm.layers, "visualization.feature_maps.layers")}
    return targets, layers


def _first_test_photo(manifest: Any) -> str | None:
    """The first test-split photo of the manifest (feature_maps.image=auto), or None without one."""
    if manifest is None or not manifest.exists():
        log.info("visualization: no manifest, so no photo for the feature maps (run data_ingestion for one).")
        return None
    m = manifest()
    test = m[m["split"] == "test"] if "split" in m else m
    return str(sorted(test["path"])[0]) if len(test) else None


def draw_feature_maps(
    layers: dict[str, Any],
    visualization: VisualizationParams,
    backbone: BackboneParams,
    finetuned: Any,
    head: Any,
) -> dict[str, Any]:
    """One PNG grid per chosen layer: the most active channels for the photo (empty when no photo)."""
    from transfer_lab.data.imaging import load_rgb
    from transfer_lab.models.featuremaps import layer_activations
    from transfer_lab.reports.plots import feature_maps

    if not layers:
        return {}
    model = _model(visualization, backbone, finetuned, head)
    h, w = model.input_shape[1], model.input_shape[2]
    image = load_rgb(layers["image"], size=(w, h) if h and w else None)
    acts = layer_activations(model, layers["layers"], image)
    max_maps = visualization.feature_maps.max_maps
    return {name: feature_maps(act, layer_name=name, image=image, max_maps=max_maps) for name, act in acts.items()}


def generate_ideal_images(
    targets: list[dict[str, Any]],
    visualization: VisualizationParams,
    backbone: BackboneParams,
    finetuned: Any,
    head: Any,
) -> tuple[dict, Any, dict]:
    """One ideal image per class, a labelled grid, and the report (probability under the model,
    TV per pixel, second model's probability and rank)."""
    from dataclasses import asdict

    from transfer_lab.runtime.progress import progress_bar

    from transfer_lab.io import tracking
    from transfer_lab.models import ideal
    from transfer_lab.models.backbones import logits_model
    from transfer_lab.reports.plots import image_grid
    from transfer_lab.runtime.devices import set_seed

    p = visualization
    config = p.ideal_config()
    set_seed(config.seed)
    model = _model(p, backbone, finetuned, head)
    logits = logits_model(model)
    size = int(model.input_shape[1])
    second, second_names = choice.second_model(p.second_model, size, backbone) if p.second_model else (None, [])
    label = choice.model_label(p.model, backbone, p.image_size)
    images: dict[str, np.ndarray] = {}
    config_dict = asdict(config) | {"regularizers": dict(config.regularizers), "scale": list(config.scale)}
    report: dict[str, Any] = {
        "model": label,
        "second_model": p.second_model.describe() if p.second_model else None,
        "config": config_dict,
        "classes": {},
    }
    titles = []
    for c in progress_bar(targets, desc="ideal images", unit="class"):
        res = ideal.generate(logits, c["indices"], config, description=f"ideal {c['name']}")
        entry: dict[str, Any] = {
            "index": c["indices"][0] if len(c["indices"]) == 1 else c["indices"],
            "probability": round(res.probability, 6),
            "logit": round(res.logit, 4),
            "tv_per_pixel": round(res.tv_per_pixel, 4),
            "seconds": round(res.seconds, 2),
            "steps": config.steps,
        }
        title = f"{c['name']}\np={res.probability:.3f}  TV/px={res.tv_per_pixel:.1f}"
        if second is not None:
            target = c["imagenet"]
            if target["indices"]:
                probs = ideal.class_probabilities(second, res.image)
                p2, rank = ideal.group_rank(probs, target["indices"])
                entry["second_model"] = {
                    "classes": target["names"] if len(target["names"]) <= 10
                    else f"{len(target['names'])} ImageNet classes ({', '.join(target['names'][:3])}, ...)",
                    "probability": round(p2, 6), "rank": rank,
                    "top5": rank <= 5, "top_class": second_names[int(np.argmax(probs))],
                }
                title += f"\n2nd model: p={p2:.2f} rank {rank}"
            else:
                entry["second_model"] = {"classes": [], "note": "no ImageNet counterpart; set visualization.second_model.class_map"}
        if p.compare_unsmoothed:
            base = ideal.generate(logits, c["indices"], config.without_smoothness(), description=f"{c['name']} (no TV/L2)")
            entry["unsmoothed"] = {"probability": round(base.probability, 6), "tv_per_pixel": round(base.tv_per_pixel, 4),
                                   "seconds": round(base.seconds, 2)}
            entry["tv_ratio"] = round(res.tv_per_pixel / max(base.tv_per_pixel, 1e-9), 4)
        log.info("ideal %s: p=%.4f TV/px=%.2f in %.1f s%s", c["name"], res.probability, res.tv_per_pixel, res.seconds,
                 f", second model p={entry['second_model'].get('probability')} rank={entry['second_model'].get('rank')}"
                 if "second_model" in entry else "")
        tracking.log_history({f"ideal.{c['name']}.logit": res.history["logit"]})
        report["classes"][c["name"]] = entry
        images[c["name"]] = res.image
        titles.append(title)
    entries = list(report["classes"].values())
    report["summary"] = {
        "min_probability": min(e["probability"] for e in entries),
        "mean_tv_per_pixel": round(float(np.mean([e["tv_per_pixel"] for e in entries])), 4),
        "max_seconds": max(e["seconds"] for e in entries),
    }
    ranks = [e["second_model"]["rank"] for e in entries if "rank" in e.get("second_model", {})]
    if ranks:
        report["summary"]["worst_second_model_rank"] = max(ranks)
    if p.compare_unsmoothed:
        report["summary"]["max_tv_ratio"] = max(e["tv_ratio"] for e in entries)
    grid = image_grid(list(images.values()), titles, ncols=min(4, len(images)), cell=3.2,
                      suptitle=f"Ideal images of {label}")
    return images, grid, report
