"""Nodes of the visualization pipeline: resolve the classes and layers (at once, before any long
work), draw feature maps of chosen layers for one photo, and generate one "ideal" image per class.

The parameters arrive validated (:class:`~transfer_lab.params.visualization.VisualizationParams`);
the optimisation lives in :mod:`transfer_lab.models.ideal`, feature maps in
:mod:`transfer_lab.models.featuremaps` and :func:`transfer_lab.reports.plots.feature_maps`; the
model is chosen by :mod:`transfer_lab.models.choice` (as adversarial chooses it).
"""

from __future__ import annotations

import logging
from pathlib import Path
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
    if p.n_images > 1 and p.diversity > 0 and p.diversity_layer.strip().lower() != "auto":
        diversity_layer(_model(p, backbone, finetuned, head), p.diversity_layer)  # a wrong name fails here, early
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
    """One PNG grid per chosen layer: the most active channels for the photo (empty when no photo)
    and, with ``feature_maps.channel_images`` k > 0, a last row pairing each of the k most active
    channels' map with its ideal image (a channel objective: an image optimised to raise that
    channel's mean activation, with the class images' recipe for ``feature_maps.channel_steps``)."""
    from transfer_lab.data.imaging import load_rgb
    from transfer_lab.models.featuremaps import layer_activations
    from transfer_lab.reports.plots import feature_maps, image_grid

    if not layers:
        return {}
    fm = visualization.feature_maps
    model = _model(visualization, backbone, finetuned, head)
    h, w = model.input_shape[1], model.input_shape[2]
    image = load_rgb(layers["image"], size=(h, w) if h and w else None, resize=backbone.resize)
    acts = layer_activations(model, layers["layers"], image)
    out = {}
    for name, act in acts.items():
        if not fm.channel_images:
            out[name] = feature_maps(act, layer_name=name, image=image, max_maps=fm.max_maps)
            continue
        order = np.argsort(-act.reshape(-1, act.shape[-1]).mean(axis=0))
        ideal_imgs, reached = channel_images(model, name, order[:fm.channel_images], visualization)
        ncols = 8
        cells = [image] + [act[:, :, c] for c in order[:fm.max_maps]]
        titles = ["input"] + [f"ch {c}" for c in order[:fm.max_maps]]
        pad = (-len(cells)) % ncols
        cells += [np.full((4, 4, 3), 255, np.uint8)] * pad
        titles += [""] * pad
        for c, img, a in zip(order, ideal_imgs, reached):
            cells += [act[:, :, c], img]
            titles += [f"ch {c}: map (mean {act[:, :, c].mean():.2f})", f"ch {c}: ideal (mean {a:.2f})"]
        out[name] = image_grid(
            cells, titles, ncols=ncols, cell=1.6,
            suptitle=f"Feature maps of layer {name} ({act.shape[0]}x{act.shape[1]}, {act.shape[-1]} channels; "
                     f"{min(fm.max_maps, act.shape[-1])} most active shown; last row: the {len(ideal_imgs)} most "
                     "active channels' map beside their ideal image)")
    return out


def channel_images(model: Any, layer: str, channels: Any, visualization: VisualizationParams) -> tuple[np.ndarray, np.ndarray]:
    """Ideal images of ``channels`` of ``layer`` (:func:`transfer_lab.models.ideal.generate_channels`)
    and each channel's mean activation on its image."""
    from dataclasses import replace

    import keras

    from transfer_lab.models import ideal
    from transfer_lab.models.featuremaps import activation_model

    sub = activation_model(model, [layer])
    out = sub.outputs[0] if isinstance(sub.outputs, (list, tuple)) else sub.outputs
    layer_model = keras.Model(sub.inputs, out)
    fm = visualization.feature_maps
    steps = fm.channel_steps or max(1, visualization.steps // 3)
    config = replace(visualization.ideal_config(), steps=steps, octaves=1, batch=fm.channel_batch)
    return ideal.generate_channels(layer_model, [int(c) for c in channels], config, description=f"channels of {layer}")


def diversity_layer(model: Any, name: str) -> str:
    """``visualization.diversity_layer``: a layer name of the model (or its backbone), or ``auto``:
    the middle one of the backbone's 4-D (spatial) layers, where textures (not yet the class) live."""
    from transfer_lab.models.featuremaps import _find_backbone, resolve_layer_names

    if str(name).strip().lower() != "auto":
        return resolve_layer_names(model, [name], "visualization.diversity_layer")[0]
    inner = _find_backbone(model)
    net = inner if inner is not None else model
    spatial = [layer.name for layer in net.layers[1:] if len(getattr(layer, "output").shape) == 4]
    if not spatial:
        raise ValueError(f"visualization.diversity_layer=auto: {model.name} has no spatial layer; name one, or set "
                         "visualization.diversity=0.")
    return spatial[len(spatial) // 2]


def _pool_rows(manifest: Any, pool: int, seed: int) -> list[str]:
    """Up to ``pool`` photo paths of the manifest's train split (an even random sample, sorted)."""
    if pool <= 0 or manifest is None or not manifest.exists():
        return []
    m = manifest()
    rows = m[m["split"] == "train"] if "split" in m else m
    paths = sorted(str(p) for p in rows["path"])
    if len(paths) > pool:
        keep = np.random.default_rng(seed).choice(len(paths), pool, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    return paths


def natural_examples(model: Any, targets: list[dict[str, Any]], paths: list[str], top: int, runtime: Any = None,
                     batch_size: int = 32, resize: str = "squash") -> dict[str, list[dict[str, Any]]]:
    """Per class, the ``top`` photos of ``paths`` that ``model`` scores highest for it (a group:
    summed probability), best first: ``{class: [{path, probability, image}]}``. The photos are read
    through the pixel cache (``runtime.pixel_cache``) when it is on, else decoded once here."""
    from transfer_lab.data.imaging import load_rgb
    from transfer_lab.data.pixels import cached_pixels, pixel_cache_folder
    from transfer_lab.models.predict import as_probabilities

    if not paths or top <= 0:
        return {}
    h, w = int(model.input_shape[1]), int(model.input_shape[2])
    pixels = cached_pixels(paths, (h, w), pixel_cache_folder(runtime), resize) if runtime is not None else None
    if pixels is None:
        pixels = np.stack([load_rgb(p, size=(h, w), resize=resize) for p in paths])
    probs = np.concatenate([as_probabilities(np.asarray(model(np.asarray(pixels[i:i + batch_size], np.float32),
                                                                    training=False)))
                            for i in range(0, len(paths), batch_size)])
    out: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        score = probs[:, t["indices"]].sum(axis=1)
        best = np.argsort(-score, kind="stable")[:top]
        out[t["name"]] = [{"path": paths[i], "probability": float(score[i]), "image": np.asarray(pixels[i])} for i in best]
    return out


def generate_ideal_images(
    targets: list[dict[str, Any]],
    visualization: VisualizationParams,
    backbone: BackboneParams,
    finetuned: Any,
    head: Any,
    manifest: Any = None,
    runtime: Any = None,
) -> tuple[dict, Any, dict]:
    """``visualization.n_images`` ideal images per class (kept apart by a diversity term), a grid
    with each class's images beside the training photos the model scores highest for it, and the
    report (per image: probability under the model, TV per pixel, second model's probability and
    rank). Images are saved as ``<class>.png``, ``<class>_2.png``, ..."""
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
    features = None
    if config.n_images > 1 and config.diversity > 0:
        layer = diversity_layer(model, p.diversity_layer)
        features = ideal.features_and_logits(model, layer)
    size = int(model.input_shape[1])
    second, second_names = choice.second_model(p.second_model, size, backbone) if p.second_model else (None, [])
    label = choice.model_label(p.model, backbone, p.image_size)
    naturals = natural_examples(model, targets, _pool_rows(manifest, p.natural_pool, config.seed), p.natural_top,
                                runtime, resize=backbone.resize)
    images: dict[str, np.ndarray] = {}
    config_dict = asdict(config) | {"regularizers": dict(config.regularizers), "scale": list(config.scale)}
    if features is not None:
        config_dict["diversity_layer"] = layer
    report: dict[str, Any] = {
        "model": label,
        "second_model": p.second_model.describe() if p.second_model else None,
        "config": config_dict,
        "classes": {},
    }
    cells: list[np.ndarray] = []
    titles: list[str] = []
    colours: list[str] = []
    ncols = config.n_images + (p.natural_top if naturals else 0)
    for c in progress_bar(targets, desc="ideal images", unit="class"):
        results = ideal.generate_set(logits, c["indices"], config, features_model=features,
                                     description=f"ideal {c['name']}")
        entries = []
        for k, res in enumerate(results):
            key = c["name"] if k == 0 else f"{c['name']}_{k + 1}"
            e: dict[str, Any] = {
                "file": f"{key}.png",
                "probability": round(res.probability, 6),
                "logit": round(res.logit, 4),
                "tv_per_pixel": round(res.tv_per_pixel, 4),
                "seconds": round(res.seconds, 2),
            }
            title = f"{c['name']}" + (f" #{k + 1}" if len(results) > 1 else "") + f"\np={res.probability:.3f}"
            if second is not None and c["imagenet"]["indices"]:
                target = c["imagenet"]
                probs = ideal.class_probabilities(second, res.image)
                p2, rank = ideal.group_rank(probs, target["indices"])
                e["second_model"] = {"probability": round(p2, 6), "rank": rank, "top5": rank <= 5,
                                     "top_class": second_names[int(np.argmax(probs))]}
                title += f"  2nd: p={p2:.2f} #{rank}"
            images[key] = res.image
            entries.append(e)
            cells.append(res.image)
            titles.append(title)
            colours.append("black")
        first = entries[0]
        entry: dict[str, Any] = {
            "index": c["indices"][0] if len(c["indices"]) == 1 else c["indices"],
            **{k: v for k, v in first.items() if k != "file"},
            "steps": config.steps,
            "images": entries,
        }
        if second is not None:
            target = c["imagenet"]
            if target["indices"]:
                entry["second_model"] = {
                    "classes": target["names"] if len(target["names"]) <= 10
                    else f"{len(target['names'])} ImageNet classes ({', '.join(target['names'][:3])}, ...)",
                    **first["second_model"],
                    "worst_rank": max(e["second_model"]["rank"] for e in entries),
                }
            else:
                entry["second_model"] = {"classes": [], "note": "no ImageNet counterpart; set visualization.second_model.class_map"}
        if len(entries) > 1:
            entry["min_probability"] = min(e["probability"] for e in entries)
        if naturals:
            nat = naturals.get(c["name"], [])
            entry["natural"] = [{"path": n["path"], "probability": round(n["probability"], 6)} for n in nat]
            for n in nat:
                cells.append(n["image"])
                titles.append(f"photo p={n['probability']:.2f}\n{Path(n['path']).name[:22]}")
                colours.append("dimgray")
            cells += [np.full((8, 8, 3), 255, np.uint8)] * (p.natural_top - len(nat))
            titles += [""] * (p.natural_top - len(nat))
            colours += ["black"] * (p.natural_top - len(nat))
        if p.compare_unsmoothed:
            base = ideal.generate(logits, c["indices"], config.without_smoothness(), description=f"{c['name']} (no TV/L2)")
            entry["unsmoothed"] = {"probability": round(base.probability, 6), "tv_per_pixel": round(base.tv_per_pixel, 4),
                                   "seconds": round(base.seconds, 2)}
            entry["tv_ratio"] = round(first["tv_per_pixel"] / max(base.tv_per_pixel, 1e-9), 4)
        log.info("ideal %s: p=%s TV/px=%.2f in %.1f s per image%s", c["name"],
                 "/".join(f"{e['probability']:.3f}" for e in entries), first["tv_per_pixel"], first["seconds"],
                 f", second model rank {'/'.join(str(e['second_model']['rank']) for e in entries)}"
                 if entries and "second_model" in entries[0] else "")
        tracking.log_history({f"ideal.{c['name']}.logit": results[0].history["logit"]})
        report["classes"][c["name"]] = entry
    all_images = [e for entry in report["classes"].values() for e in entry["images"]]
    report["summary"] = {
        "min_probability": min(e["probability"] for e in all_images),
        "mean_tv_per_pixel": round(float(np.mean([e["tv_per_pixel"] for e in all_images])), 4),
        "max_seconds": max(e["seconds"] for e in all_images),
        "n_images": config.n_images,
    }
    ranks = [e["second_model"]["rank"] for e in all_images if "second_model" in e]
    if ranks:
        report["summary"]["worst_second_model_rank"] = max(ranks)
    if p.compare_unsmoothed:
        report["summary"]["max_tv_ratio"] = max(e["tv_ratio"] for e in report["classes"].values())
    note = f"; beside them the {p.natural_top} training photos it scores highest" if naturals else ""
    grid = image_grid(cells, titles, ncols=ncols if len(targets) > 1 or naturals else min(4, ncols), cell=2.3,
                      suptitle=f"Ideal images of {label}{note}", title_colors=colours)
    return images, grid, report
