"""Nodes of the visualization pipeline: check the parameters (at once, before any long work),
draw feature maps of chosen layers for one photo, and generate one "ideal" image per class.

The optimisation itself lives in :mod:`transfer_lab.models.ideal`; feature maps reuse
:mod:`transfer_lab.models.featuremaps` and :func:`transfer_lab.reports.plots.feature_maps`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from transfer_lab.models.ideal import IdealConfig, IdealError

log = logging.getLogger(__name__)

MODELS = ("classifier", "imagenet")
_KNOWN = {
    "model", "classes", "image_size", "steps", "learning_rate", "seed", "parameterization",
    "decorrelate_colour", "regularizers", "transforms", "octaves", "octave_scale", "batch",
    "compare_unsmoothed", "second_model", "feature_maps",
}


def _classes_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, (list, tuple)) and not value) or (isinstance(value, str) and not value.strip()):
        raise IdealError(
            "visualization.classes is empty: name one class or a list, e.g. --params visualization.classes=zebra "
            "(a class name or index of the model chosen by visualization.model)."
        )
    if isinstance(value, str) and any(sep in value for sep in ",;+"):
        # on the command line: --params "visualization.classes=zebra+tabby" (kedro splits --params at commas)
        import re

        return [v.strip() for v in re.split(r"[,;+]", value) if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _build_model(plan: Mapping[str, Any], classifier: Callable[[], Any] | None) -> Any:
    from transfer_lab.models.backbones import build_imagenet_classifier

    if plan["model"] == "classifier":
        return classifier()
    m = plan["imagenet"]
    return build_imagenet_classifier(m["name"], m["weights"], image_size=m["image_size"], alpha=m["alpha"])


def _second_model_spec(value: Any, backbone: Mapping[str, Any]) -> dict[str, Any] | None:
    from transfer_lab.models.backbones import get_spec

    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise IdealError(
            "visualization.second_model must be null (skip the check) or a mapping {name, weights, alpha, labels, "
            f"class_map}}, got {value!r}."
        )
    unknown = set(value) - {"name", "weights", "alpha", "labels", "image_size", "class_map"}
    if unknown:
        raise IdealError(f"visualization.second_model has unknown key(s) {', '.join(sorted(unknown))}; known: "
                         "name, weights, alpha, labels, image_size, class_map.")
    spec = get_spec(value.get("name", "mobilenet"))
    weights = value.get("weights", "imagenet")
    if weights not in (None, "imagenet") and not Path(str(weights)).expanduser().is_file():
        raise IdealError(
            f"visualization.second_model.weights: file not found: {weights}. Give a Keras weights file of "
            f"{spec.name} with its 1000-class top (e.g. ../shared/weights/mobilenet_0.25_imagenet.weights.h5), "
            "'imagenet' to download it, or set visualization.second_model=null to skip the check."
        )
    class_map = value.get("class_map") or {}
    if not isinstance(class_map, Mapping):
        raise IdealError("visualization.second_model.class_map must map a class of the model to ImageNet class "
                         "name(s), e.g. {cat: [tabby, tiger_cat]}.")
    return {
        "name": spec.name,
        "weights": weights,
        "alpha": float(value.get("alpha", 1.0) or 1.0),
        "labels": value.get("labels") or backbone.get("imagenet_labels"),
        "image_size": value.get("image_size"),
        "class_map": {str(k): v for k, v in class_map.items()},
    }


def _map_to_imagenet(members: list[str], class_map: Mapping[str, Any], imagenet_names: list[str],
                     species: Mapping[str, str]) -> tuple[list[int], str]:
    """ImageNet classes that stand for a class (or group) of the model: ``class_map`` when given,
    else the class's own name or group (``cat`` = 281-285, ``dog`` = 151-268), else its species
    (a breed ImageNet lacks, like Abyssinian, counts as ``cat``), else none."""
    from transfer_lab.models.attacks import class_set

    out: list[int] = []
    how = set()
    for name in members:
        if name in class_map:
            idx, why = class_set(class_map[name], imagenet_names, f"visualization.second_model.class_map.{name}"), "class_map"
        else:
            idx, why = (), "none"
            for key, label in ((name, "name"), (species.get(name), "species")):
                if not key:
                    continue
                try:
                    idx, why = class_set(key, imagenet_names, "class"), label
                    break
                except ValueError:
                    continue
        out.extend(i for i in idx if i not in out)
        how.add(why)
    return out, "+".join(sorted(how))


def check_parameters(
    visualization: Mapping[str, Any],
    backbone: Mapping[str, Any],
    class_names: Callable[[], Any],
    classifier: Callable[[], Any],
    manifest: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Every parameter checked before any long work; returns the run's plan (plain data).

    A class is a name or index of the model, or a group: on ImageNet ``cat`` (281-285) and
    ``dog`` (151-268); on a breed classifier ``cat`` / ``dog`` = every breed of that species (from
    the manifest's species column, when the manifest exists).
    """
    from transfer_lab.models.attacks import class_set, species_groups, species_of
    from transfer_lab.models.backbones import BackboneConfig, imagenet_class_names
    from transfer_lab.models.featuremaps import resolve_layer_names

    params = dict(visualization or {})
    unknown = set(params) - _KNOWN
    if unknown:
        raise IdealError(f"Unknown visualization parameter(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(_KNOWN))}.")
    kind = str(params.get("model", "classifier")).strip().lower()
    if kind not in MODELS:
        raise IdealError(
            f"visualization.model={kind!r} is not a model here: use 'classifier' (data/06_models/classifier.keras "
            "from head_training) or 'imagenet' (backbone.name with its 1000-class head, backbone.classifier_weights)."
        )
    config = IdealConfig.from_params(params)
    bb = BackboneConfig.from_params(backbone or {})
    size = params.get("image_size") or bb.size
    plan: dict[str, Any] = {"model": kind, "config": _config_dict(config)}
    if kind == "imagenet":
        names = imagenet_class_names(backbone.get("imagenet_labels"))
        plan["imagenet"] = {"name": bb.name, "weights": backbone.get("classifier_weights", "imagenet"),
                            "image_size": int(size), "alpha": bb.alpha}
        plan["model_label"] = f"{bb.name} (ImageNet, {int(size)} px)"
    else:
        names = [str(c) for c in class_names()]
        plan["model_label"] = "classifier (data/06_models/classifier.keras)"
    plan["class_names"] = names
    species: dict[str, str] = {}
    if kind == "classifier" and manifest is not None:
        try:
            species = species_of(manifest())
        except Exception as exc:  # no manifest: no species groups, and the error says so only if one is asked for
            log.info("visualization: no manifest for species groups (%s)", exc)
    groups = species_groups(species, names)
    wanted = _classes_list(params.get("classes"))
    classes: list[dict[str, Any]] = []
    for item in wanted:
        idx = list(class_set(item, names, "visualization.classes", groups=groups or None))
        name = names[idx[0]] if len(idx) == 1 else str(item).strip().lower()
        if name not in [c["name"] for c in classes]:
            classes.append({"name": name, "indices": idx, "members": [names[i] for i in idx]})
    plan["classes"] = classes
    plan["compare_unsmoothed"] = bool(params.get("compare_unsmoothed", False))

    second = _second_model_spec(params.get("second_model"), backbone or {})
    if second is not None:
        inames = imagenet_class_names(second["labels"])
        second["targets"] = {}
        for c in classes:
            members = [c["name"]] if kind == "imagenet" or c["name"] in second["class_map"] else c["members"]
            idx, how = _map_to_imagenet(members, second["class_map"], inames, species)
            second["targets"][c["name"]] = {"indices": idx, "names": [inames[i] for i in idx], "mapped_by": how}
            if not idx:
                log.warning("visualization: class %r has no ImageNet counterpart for the second model; add it to "
                            "visualization.second_model.class_map to check it.", c["name"])
        second["imagenet_names"] = inames
    plan["second_model"] = second

    fm = params.get("feature_maps") or {}
    if not isinstance(fm, Mapping):
        raise IdealError("visualization.feature_maps must be a mapping {image, layers, max_maps} or null.")
    plan["feature_maps"] = None
    image = fm.get("image", "auto")
    if isinstance(image, str) and image.strip().lower() == "auto":
        image = _first_test_photo(manifest)
    if image:
        photo = Path(str(image)).expanduser()
        if not photo.is_file():
            raise IdealError(f"visualization.feature_maps.image: photo not found: {photo}. Give a photo path, or null "
                             "to skip the feature maps.")
        max_maps = int(fm.get("max_maps", 32) or 32)
        if max_maps < 1:
            raise IdealError(f"visualization.feature_maps.max_maps must be >= 1, got {max_maps}.")
        layers = fm.get("layers") or ["last_conv"]
        layers = [layers] if isinstance(layers, str) else list(layers)
        model = _build_model(plan, classifier)  # a few seconds; checks the layers before any long work
        resolved = resolve_layer_names(model, layers, "visualization.feature_maps.layers")
        plan["feature_maps"] = {"image": str(photo), "layers": resolved, "max_maps": max_maps}
    return plan


def _first_test_photo(manifest: Callable[[], Any] | None) -> str | None:
    """The first test-split photo of the manifest (feature_maps.image=auto), or None without one."""
    if manifest is None:
        return None
    try:
        m = manifest()
    except Exception as exc:
        log.info("visualization: no manifest, so no photo for the feature maps (%s)", exc)
        return None
    test = m[m["split"] == "test"] if "split" in m else m
    return str(sorted(test["path"])[0]) if len(test) else None


def _config_dict(config: IdealConfig) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(config)
    out["regularizers"] = dict(config.regularizers)
    out["scale"] = list(config.scale)
    return out


def draw_feature_maps(plan: Mapping[str, Any], classifier: Callable[[], Any]) -> dict[str, Any]:
    """One PNG grid per chosen layer: the most active channels for the photo (empty when no photo)."""
    from transfer_lab.models.featuremaps import layer_activations
    from transfer_lab.data.imaging import load_rgb
    from transfer_lab.reports.plots import feature_maps

    fm = plan.get("feature_maps")
    if not fm:
        return {}
    model = _build_model(plan, classifier)
    h, w = model.input_shape[1], model.input_shape[2]
    image = load_rgb(fm["image"], size=(w, h) if h and w else None)
    acts = layer_activations(model, fm["layers"], image)
    return {name: feature_maps(act, layer_name=name, image=image, max_maps=fm["max_maps"]) for name, act in acts.items()}


def _second_model(spec: Mapping[str, Any], size: int) -> Any:
    from transfer_lab.models.backbones import build_imagenet_classifier

    return build_imagenet_classifier(spec["name"], spec["weights"], image_size=spec.get("image_size") or size,
                                     alpha=spec["alpha"], param="visualization.second_model.weights")


def generate_ideal_images(plan: Mapping[str, Any], classifier: Callable[[], Any]) -> tuple[dict, Any, dict]:
    """One ideal image per class, a labelled grid, and the report (probability under the model,
    TV per pixel, second model's probability and rank)."""
    from tqdm.auto import tqdm

    from transfer_lab.io import tracking
    from transfer_lab.models import ideal
    from transfer_lab.models.backbones import logits_model
    from transfer_lab.reports.plots import image_grid
    from transfer_lab.runtime.devices import set_seed

    config = IdealConfig(**{**plan["config"], "scale": tuple(plan["config"]["scale"])})
    set_seed(config.seed)
    model = _build_model(plan, classifier)
    logits = logits_model(model)
    size = int(model.input_shape[1])
    second_spec = plan.get("second_model")
    second = _second_model(second_spec, size) if second_spec else None
    images: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {
        "model": plan["model_label"],
        "second_model": (f"{second_spec['name']} alpha={second_spec['alpha']} (ImageNet)" if second_spec else None),
        "config": plan["config"],
        "classes": {},
    }
    titles = []
    for c in tqdm(plan["classes"], desc="ideal images", unit="class"):
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
            target = second_spec["targets"][c["name"]]
            if target["indices"]:
                probs = ideal.class_probabilities(second, res.image)
                p2, rank = ideal.group_rank(probs, target["indices"])
                top = int(np.argmax(probs))
                entry["second_model"] = {
                    "classes": target["names"] if len(target["names"]) <= 10
                    else f"{len(target['names'])} ImageNet classes ({', '.join(target['names'][:3])}, ...)",
                    "probability": round(p2, 6), "rank": rank,
                    "top5": rank <= 5, "top_class": second_spec["imagenet_names"][top],
                }
                title += f"\n2nd model: p={p2:.2f} rank {rank}"
            else:
                entry["second_model"] = {"classes": [], "note": "no ImageNet counterpart; set visualization.second_model.class_map"}
        if plan.get("compare_unsmoothed"):
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
    if plan.get("compare_unsmoothed"):
        report["summary"]["max_tv_ratio"] = max(e["tv_ratio"] for e in entries)
    grid = image_grid(list(images.values()), titles, ncols=min(4, len(images)), cell=3.2,
                      suptitle=f"Ideal images of {plan['model_label']}")
    return images, grid, report
