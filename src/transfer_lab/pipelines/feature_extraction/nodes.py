"""feature_extraction: every photo of the manifest through the frozen backbone once; pooled
features and labels per split, cached under a key of (manifest, backbone, weights)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_lab.models.backbones import BackboneConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1  # bump when the stored layout or the extraction itself changes
MANIFEST_COLUMNS = ("path", "label", "split", "sha256")


class FeatureExtractionError(ValueError):
    """Bad feature_extraction parameters or input; the message says what to change."""


def validate_parameters(backbone: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fail at once on bad ``backbone.*`` or ``feature_extraction.*`` parameters."""
    cfg = BackboneConfig.from_params(backbone or {})
    params = dict(params or {})
    known = {"batch_size", "cache", "flip_augment", "feature_map_layer", "feature_map_image", "max_maps", "seed"}
    unknown = set(params) - known
    if unknown:
        raise FeatureExtractionError(
            f"Unknown feature_extraction parameter(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}."
        )
    batch_size = params.get("batch_size", "auto")
    if isinstance(batch_size, str) and batch_size.strip().lower() == "auto":
        batch_size = "auto"
    elif not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise FeatureExtractionError(
            f"feature_extraction.batch_size must be auto or a whole number >= 1, got {batch_size!r}.")
    max_maps = params.get("max_maps", 32)
    if not isinstance(max_maps, int) or max_maps < 1:
        raise FeatureExtractionError(f"feature_extraction.max_maps must be a whole number >= 1, got {max_maps!r}.")
    image = params.get("feature_map_image")
    if image not in (None, "") and not Path(str(image)).expanduser().is_file():
        raise FeatureExtractionError(
            f"feature_extraction.feature_map_image: no such file {image}. Give a photo's path, or null for the "
            "first test photo of the manifest."
        )
    weights = _weights_identity(cfg.weights)  # checks that a weights file exists
    return {
        "backbone": {"name": cfg.name, "weights": cfg.weights, "image_size": cfg.size, "alpha": cfg.alpha},
        "weights_id": weights,
        "batch_size": batch_size if batch_size == "auto" else int(batch_size),
        "cache": bool(params.get("cache", True)),
        "flip_augment": bool(params.get("flip_augment", True)),
        "feature_map_layer": params.get("feature_map_layer") or "last_conv",
        "feature_map_image": str(Path(str(image)).expanduser()) if image not in (None, "") else None,
        "max_maps": int(max_maps),
        "seed": int(params.get("seed", 42)),
    }


def _weights_identity(weights: Any) -> str:
    """What the features depend on in ``backbone.weights``: a file's size, mtime and a hash of its bytes."""
    from transfer_lab.models.backbones import resolve_weights

    resolved = resolve_weights(weights)  # fails clearly on a missing file
    if resolved is None or resolved == "imagenet":
        return resolved or "none"
    path = Path(resolved)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def usable_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows to extract: no duplicates, known split; fails clearly on a wrong manifest."""
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise FeatureExtractionError(
            f"The manifest lacks column(s) {', '.join(missing)}. Re-run `kedro run --pipelines=data_ingestion`."
        )
    from transfer_lab.data.manifest import without_duplicates

    rows = without_duplicates(manifest)
    rows = rows[rows["split"].isin(SPLITS)].copy()
    rows["label"] = rows["label"].astype(str)
    if rows.empty:
        raise FeatureExtractionError("The manifest has no usable photos. Re-run `kedro run --pipelines=data_ingestion`.")
    if not (rows["split"] == "train").any():
        raise FeatureExtractionError("The manifest has no train photos: check data.split in parameters_data_ingestion.yml.")
    return rows.reset_index(drop=True)


def cache_key(rows: pd.DataFrame, config: dict[str, Any]) -> str:
    """Hash of what the features depend on: each photo's bytes, label and split, the backbone, its
    weights and input size, and the extraction's own format."""
    digest = hashlib.sha256()
    head = {
        "format": CACHE_FORMAT,
        "backbone": {k: config["backbone"][k] for k in ("name", "image_size", "alpha")},
        "weights": config["weights_id"],
        # random weights depend on the seed
        "seed": config["seed"] if config["weights_id"] == "none" else None,
        "flip_augment": config.get("flip_augment", False),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for sha, label, split in rows[["sha256", "label", "split"]].itertuples(index=False):
        digest.update(f"\n{sha}\t{label}\t{split}".encode())
    return digest.hexdigest()


def _stored_key(cached: dict[str, np.ndarray] | None) -> str | None:
    if not cached or "cache_key" not in cached:
        return None
    return str(np.asarray(cached["cache_key"]).reshape(-1)[0])


def extract_features(
    manifest: pd.DataFrame, config: dict[str, Any], cached: dict[str, np.ndarray] | None,
    runtime: dict[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Pooled features + labels for every split (``{split}_features``, ``{split}_labels``,
    ``{split}_paths``), ``class_names``, ``class_species`` and the ``cache_key``; and a report
    (throughput, wall time) logged to MLflow."""
    rows = usable_rows(manifest)
    key = cache_key(rows, config)
    stored = _stored_key(cached)
    if config["cache"] and stored == key:
        log.info("Reusing cached features (cache key %s... matches: same photos, labels, splits, backbone and weights).",
                 key[:12])
        report = json.loads(str(np.asarray(cached["report"]).reshape(-1)[0])) if "report" in cached else {}
        report["cached"] = True
        return cached, report
    if stored and config["cache"]:
        log.info("Cached features are out of date (key %s... != %s...): extracting again.", stored[:12], key[:12])

    from tqdm.auto import tqdm

    from transfer_lab.models.backbones import build_feature_extractor
    from transfer_lab.runtime.devices import set_seed

    set_seed(config["seed"])
    cfg = BackboneConfig.from_params(config["backbone"])
    from transfer_lab.runtime.strategy import setup_runtime

    rt = setup_runtime(runtime)  # runtime.*: strategy and precision (parameters_runtime.yml)
    with rt.scope():
        extractor = build_feature_extractor(cfg)
    class_names = sorted(rows["label"].unique())
    index = {c: i for i, c in enumerate(class_names)}
    species = {}
    if "species" in rows.columns:
        for label, sp in rows[["label", "species"]].itertuples(index=False):
            sp = "" if pd.isna(sp) else str(sp)
            species.setdefault(label, set()).add(sp)
    out: dict[str, np.ndarray] = {"class_names": np.asarray(class_names)}
    out["class_species"] = np.asarray([
        next(iter(species[c])) if len(species.get(c, ())) == 1 else "" for c in class_names
    ])
    n_total = len(rows)
    start = time.perf_counter()
    # One pass over all photos (train, val, test in turn), then cut per split.
    rows = pd.concat([rows[rows["split"] == s] for s in SPLITS], ignore_index=True)
    fit_rows = rows[rows["split"].isin(("train", "val"))]
    n_passes = n_total + (len(fit_rows) if config["flip_augment"] else 0)
    batch_size = rt.global_batch(resolve_batch_size(config["batch_size"], on_gpu=rt.on_gpu))
    with tqdm(total=n_passes, desc=f"Features ({cfg.name}, {cfg.size} px)", unit="img") as bar:
        feats = run_extractor(extractor, rows["path"].tolist(), cfg.size, batch_size, bar)
        if config["flip_augment"]:
            # Mirror images of the training and validation photos: extra training samples for the head.
            flipped = run_extractor(extractor, fit_rows["path"].tolist(), cfg.size, batch_size, bar, flip=True)
    for split in SPLITS:
        mask = (rows["split"] == split).to_numpy()
        out[f"{split}_features"] = feats[mask]
        out[f"{split}_labels"] = rows.loc[mask, "label"].map(index).to_numpy(np.int32)
        out[f"{split}_paths"] = np.asarray(rows.loc[mask, "path"].astype(str).tolist(), dtype=str)
    if config["flip_augment"]:
        fit_split = fit_rows["split"].to_numpy()
        for split in ("train", "val"):
            out[f"{split}_features_flip"] = flipped[fit_split == split]
    wall = time.perf_counter() - start
    report = {
        "cached": False,
        "n_images": int(n_total),
        "n_forward_passes": int(n_passes),
        "flip_augment": bool(config["flip_augment"]),
        "n_features": int(extractor.output_shape[-1]),
        "n_classes": len(class_names),
        "split_counts": {s: int((rows["split"] == s).sum()) for s in SPLITS},
        "wall_s": round(wall, 3),
        "images_per_s": round(n_passes / wall, 2) if wall > 0 else None,
        "backbone": cfg.name,
        "image_size": cfg.size,
    }
    log.info("Extracted %d x %d features in %.1f s (%.1f images/s).", n_passes, report["n_features"], wall,
             report["images_per_s"] or 0)
    out["cache_key"] = np.asarray([key])
    out["backbone"] = np.asarray([json.dumps({**config["backbone"], "weights_id": config["weights_id"]})])
    out["report"] = np.asarray([json.dumps(report)])
    return out, report


#: feature_extraction.batch_size=auto, per replica. On CPU small batches keep a MobileNetV2 forward
#: pass in cache: 8 photos a batch ran 35% more images/s than 32 on 2 cores (bench/feature_extraction.py).
AUTO_BATCH = {"CPU": 8, "GPU": 64}


def resolve_batch_size(batch_size: Any, *, on_gpu: bool = False) -> int:
    """``feature_extraction.batch_size`` per replica: a number, or ``auto`` for the device's default."""
    if batch_size == "auto":
        return AUTO_BATCH["GPU" if on_gpu else "CPU"]
    return int(batch_size)


def run_extractor(
    extractor: Any, paths: list[str], size: int, batch_size: int, bar: Any = None, *, flip: bool = False
) -> np.ndarray:
    """Features of ``paths`` through ``extractor``: a tf.data pipeline (parallel decode and resize,
    batching, prefetch) feeding a compiled forward pass, one batch at a time. ``flip``: of the
    left-right mirror images."""
    from transfer_lab.data.tfdata import image_dataset

    n_out = int(extractor.output_shape[-1])
    if not paths:
        return np.zeros((0, n_out), np.float32)
    forward = _compiled_forward(extractor, size)
    from transfer_lab.models.predict import predict_batches
    from transfer_lab.runtime.strategy import current

    batches = image_dataset(paths, image_size=size, batch_size=batch_size, flip=flip)
    rt = current()
    if rt is not None and rt.replicas > 1 and rt.workers == 1:  # split each batch over the local replicas
        outputs = predict_batches(extractor, batches, rt)
    else:
        outputs = (forward(b) for b in batches)
    chunks = []
    for out in outputs:
        chunks.append(np.asarray(out, dtype=np.float32))
        if bar is not None:
            bar.update(len(chunks[-1]))
    return np.concatenate(chunks)


_FORWARD: dict[int, tuple[Any, Any]] = {}


def _compiled_forward(extractor: Any, size: int) -> Any:
    """One traced forward pass per extractor (tracing MobileNetV2 takes seconds; calls reuse it)."""
    import weakref

    import tensorflow as tf

    key = id(extractor)
    hit = _FORWARD.get(key)
    if hit is not None and hit[0]() is extractor:
        return hit[1]
    forward = tf.function(
        lambda x: extractor(x, training=False),
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
    )
    _FORWARD[key] = (weakref.ref(extractor), forward)
    weakref.finalize(extractor, _FORWARD.pop, key, None)
    return forward


def feature_map_figure(manifest: pd.DataFrame, config: dict[str, Any]) -> Any:
    """Feature maps of ``feature_extraction.feature_map_layer`` for one photo, as a figure."""
    from transfer_lab.reports import plots
    from transfer_lab.models.backbones import build_feature_extractor
    from transfer_lab.models.featuremaps import layer_activations, resolve_layer_names
    from transfer_lab.data.imaging import load_rgb

    cfg = BackboneConfig.from_params(config["backbone"])
    path = config["feature_map_image"]
    if path is None:
        rows = usable_rows(manifest)
        test = rows[rows["split"] == "test"]
        path = (test if len(test) else rows)["path"].iloc[0]
    extractor = build_feature_extractor(cfg)
    layer = resolve_layer_names(extractor, config["feature_map_layer"], "feature_extraction.feature_map_layer")[0]
    image = load_rgb(path, cfg.size)
    acts = layer_activations(extractor, [layer], image)[layer]
    if acts.ndim != 3:
        raise FeatureExtractionError(
            f"feature_extraction.feature_map_layer={layer} has output shape {acts.shape}, not a spatial map. "
            "Pick a convolutional layer (or 'last_conv')."
        )
    fig = plots.feature_maps(acts, layer_name=layer, image=image, max_maps=config["max_maps"])
    fig.text(0.5, 0.005, f"{cfg.name} on {Path(path).name}", ha="center", fontsize=8)
    return fig
