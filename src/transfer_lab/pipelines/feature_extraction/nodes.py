"""feature_extraction: every photo of the manifest through the frozen backbone once; pooled
features and labels per split (the ``features`` artefact).

An earlier extraction is reused when its cache key matches: the key hashes each photo's bytes,
label and split, the backbone, its weights and input size. The cache is a folder
(``feature_extraction.cache_dir``, one ``<key>.npz`` per extraction) that ``extract_features`` reads
and writes itself; it is not a catalog artefact."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transfer_lab.runtime.progress import progress_bar

from transfer_lab.data.imaging import load_rgb
from transfer_lab.data.manifest import REQUIRED_COLUMNS, SPLITS, ManifestError, require_columns, without_duplicates
from transfer_lab.data.pixels import cached_pixels, pixel_cache_folder
from transfer_lab.data.tfdata import image_dataset
from transfer_lab.io.files import atomic_path
from transfer_lab.models.backbones import BackboneError, build_feature_extractor, resolve_weights
from transfer_lab.models.featuremaps import layer_activations, resolve_layer_names
from transfer_lab.models.predict import predict_batches
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.feature_extraction import FeatureExtractionParams
from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.reports import plots
from transfer_lab.runtime.cluster import is_chief
from transfer_lab.runtime.devices import set_seed
from transfer_lab.runtime.strategy import current, setup_runtime

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the stored layout or the extraction itself changes
#: What feature_extraction reads from the manifest: what every reader needs, and each photo's
#: sha256 (its bytes go into the cache key).
FEATURE_COLUMNS = (*REQUIRED_COLUMNS, "sha256")


def weights_identity(weights: Any) -> str:
    """What the features depend on in ``backbone.weights``: ``imagenet``, ``none`` or the sha256 of
    the weights file's bytes."""
    resolved = resolve_weights(weights)
    if resolved is None or resolved == "imagenet":
        return resolved or "none"
    digest = hashlib.sha256()
    with Path(resolved).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def usable_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows to extract: no duplicates, known split; fails clearly on a wrong manifest."""
    require_columns(manifest, FEATURE_COLUMNS)
    rows = without_duplicates(manifest)
    rows = rows[rows["split"].isin(SPLITS)].copy()
    rows["label"] = rows["label"].astype(str)
    if rows.empty:
        raise ManifestError("The manifest has no usable photos. Re-run `kedro run --pipelines=data_ingestion`.")
    if not (rows["split"] == "train").any():
        raise ManifestError("The manifest has no train photos: check data.split in parameters_data_ingestion.yml.")
    return rows.reset_index(drop=True)


def cache_key(rows: pd.DataFrame, backbone: BackboneParams, params: FeatureExtractionParams,
              weights_id: str | None = None) -> str:
    """Hash of what the features depend on: each photo's bytes, label and split, the backbone, its
    weights and input size, the mirror images, and the extraction's own format. ``weights_id``:
    :func:`weights_identity` of ``backbone.weights`` (computed when not given)."""
    weights_id = weights_identity(backbone.weights) if weights_id is None else weights_id
    digest = hashlib.sha256()
    head = {
        "format": CACHE_FORMAT,
        "backbone": {"name": backbone.name, "image_size": backbone.size, "alpha": backbone.alpha,
                     "resize": backbone.resize},
        "weights": weights_id,
        # random weights depend on the seed
        "seed": params.seed if weights_id == "none" else None,
        "flip_augment": params.flip_augment,
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for sha, label, split in rows[["sha256", "label", "split"]].itertuples(index=False):
        digest.update(f"\n{sha}\t{label}\t{split}".encode())
    return digest.hexdigest()


def cache_file(params: FeatureExtractionParams, key: str) -> Path:
    """Where the extraction with cache key ``key`` is kept: ``<cache_dir>/<key>.npz``."""
    return Path(params.cache_dir).expanduser() / f"{key}.npz"


def read_cached(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` if it holds the extraction with cache key ``key``; ``None`` when
    it is missing, unreadable or another key's."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        if path.exists():
            log.warning("Ignoring the unreadable feature cache %s (%s): extracting again.", path, exc)
        return None
    stored = str(np.asarray(arrays.get("cache_key", [""])).reshape(-1)[0])
    if stored != key:
        log.info("Ignoring %s: its cache key %s... is not %s...", path, stored[:12], key[:12])
        return None
    return arrays


def write_cached(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Keep ``arrays`` at ``path``, whole or not at all."""
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def extract_features(
    manifest: pd.DataFrame, backbone: BackboneParams, feature_extraction: FeatureExtractionParams,
    runtime: RuntimeParams = RuntimeParams(),
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Pooled features + labels for every split (``{split}_features``, ``{split}_labels``,
    ``{split}_paths``), ``class_names``, ``class_species`` and the ``cache_key``; and a report
    (throughput, wall time) logged to MLflow. With ``feature_extraction.cache``, an earlier
    extraction of the same key is returned instead of extracting again."""
    params = feature_extraction
    rows = usable_rows(manifest)
    weights_id = weights_identity(backbone.weights)
    key = cache_key(rows, backbone, params, weights_id)
    cached_path = cache_file(params, key)
    if params.cache:
        cached = read_cached(cached_path, key)
        if cached is not None:
            log.info("Reusing cached features %s (same photos, labels, splits, backbone and weights).", cached_path)
            report = json.loads(str(np.asarray(cached["report"]).reshape(-1)[0])) if "report" in cached else {}
            report["cached"] = True
            return cached, report

    set_seed(params.seed)
    rt = setup_runtime(runtime)  # runtime.*: strategy and precision (parameters_runtime.yml)
    with rt.scope():
        extractor = build_feature_extractor(backbone)
    class_names = sorted(rows["label"].unique())
    index = {c: i for i, c in enumerate(class_names)}
    species: dict[str, set[str]] = {}
    if "species" in rows.columns:
        for label, sp in rows[["label", "species"]].itertuples(index=False):
            sp = "" if pd.isna(sp) else str(sp)
            species.setdefault(label, set()).add(sp)
    out: dict[str, np.ndarray] = {"class_names": np.asarray(class_names)}
    out["class_species"] = np.asarray([
        next(iter(species[c])) if len(species.get(c, ())) == 1 else "" for c in class_names
    ])
    n_total = len(rows)
    size = backbone.size
    start = time.perf_counter()
    # One pass over all photos (train, val, test in turn), then cut per split.
    rows = pd.concat([rows[rows["split"] == s] for s in SPLITS], ignore_index=True)
    fit_rows = rows[rows["split"].isin(("train", "val"))]
    n_passes = n_total + (len(fit_rows) if params.flip_augment else 0)
    batch_size = rt.global_batch(resolve_batch_size(params.batch_size, on_gpu=rt.on_gpu))
    # Decode once (runtime.pixel_cache): fine-tuning and later runs read the same pixels back.
    pixels = cached_pixels(rows["path"].tolist(), size, pixel_cache_folder(runtime, rt), backbone.resize)
    fit_mask = rows["split"].isin(("train", "val")).to_numpy()
    with progress_bar(total=n_passes, desc=f"Features ({backbone.name}, {size} px)", unit="img") as bar:
        feats = run_extractor(extractor, rows["path"].tolist(), size, batch_size, bar, pixels=pixels,
                              resize=backbone.resize)
        if params.flip_augment:
            # Mirror images of the training and validation photos: extra training samples for the head.
            flipped = run_extractor(extractor, fit_rows["path"].tolist(), size, batch_size, bar, flip=True,
                                    pixels=None if pixels is None else pixels[fit_mask], resize=backbone.resize)
    for split in SPLITS:
        mask = (rows["split"] == split).to_numpy()
        out[f"{split}_features"] = feats[mask]
        out[f"{split}_labels"] = rows.loc[mask, "label"].map(index).to_numpy(np.int32)
        out[f"{split}_paths"] = np.asarray(rows.loc[mask, "path"].astype(str).tolist(), dtype=str)
    if params.flip_augment:
        fit_split = fit_rows["split"].to_numpy()
        for split in ("train", "val"):
            out[f"{split}_features_flip"] = flipped[fit_split == split]
    wall = time.perf_counter() - start
    report = {
        "cached": False,
        "n_images": int(n_total),
        "n_forward_passes": int(n_passes),
        "flip_augment": bool(params.flip_augment),
        "n_features": int(extractor.output_shape[-1]),
        "n_classes": len(class_names),
        "split_counts": {s: int((rows["split"] == s).sum()) for s in SPLITS},
        "wall_s": round(wall, 3),
        "images_per_s": round(n_passes / wall, 2) if wall > 0 else None,
        "backbone": backbone.name,
        "image_size": size,
        "resize": backbone.resize,
    }
    log.info("Extracted %d x %d features in %.1f s (%.1f images/s).", n_passes, report["n_features"], wall,
             report["images_per_s"] or 0)
    out["cache_key"] = np.asarray([key])
    out["backbone"] = np.asarray([json.dumps({"name": backbone.name, "weights": backbone.weights,
                                              "image_size": size, "alpha": backbone.alpha,
                                              "resize": backbone.resize,
                                              "weights_id": weights_id})])
    out["report"] = np.asarray([json.dumps(report)])
    if params.cache and is_chief():
        write_cached(cached_path, out)
        log.info("Kept these features for a later run with the same key: %s", cached_path)
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
    extractor: Any, paths: list[str], size: int, batch_size: int, bar: Any = None, *, flip: bool = False,
    pixels: np.ndarray | None = None, resize: str = "squash",
) -> np.ndarray:
    """Features of ``paths`` through ``extractor``: a tf.data pipeline (parallel decode and resize,
    or batches of ``pixels`` already decoded; batching, prefetch) feeding a compiled forward pass,
    one batch at a time. ``flip``: of the left-right mirror images."""
    n_out = int(extractor.output_shape[-1])
    if not paths:
        return np.zeros((0, n_out), np.float32)
    forward = _compiled_forward(extractor, size)
    batches = image_dataset(paths, image_size=size, batch_size=batch_size, flip=flip, pixels=pixels, resize=resize)
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
    from transfer_lab.models import gradients

    key = id(extractor)
    hit = _FORWARD.get(key)
    if hit is not None and hit[0]() is extractor:
        return hit[1]
    forward = gradients.forward(extractor, input_signature=[((None, size, size, 3), "float32")])
    _FORWARD[key] = (weakref.ref(extractor), forward)
    weakref.finalize(extractor, _FORWARD.pop, key, None)
    return forward


def feature_map_figure(manifest: pd.DataFrame, backbone: BackboneParams,
                       feature_extraction: FeatureExtractionParams) -> Any:
    """Feature maps of ``feature_extraction.feature_map_layer`` for one photo, as a figure."""
    cfg, params = backbone, feature_extraction
    path = params.feature_map_image
    if path is None:
        rows = usable_rows(manifest)
        test = rows[rows["split"] == "test"]
        path = (test if len(test) else rows)["path"].iloc[0]
    extractor = build_feature_extractor(cfg)
    layer = resolve_layer_names(extractor, params.feature_map_layer, "feature_extraction.feature_map_layer")[0]
    image = load_rgb(path, cfg.size, resize=cfg.resize)
    acts = layer_activations(extractor, [layer], image)[layer]
    if acts.ndim != 3:
        raise BackboneError(
            f"feature_extraction.feature_map_layer={layer} has output shape {acts.shape}, not a spatial map. "
            "Pick a convolutional layer (or 'last_conv')."
        )
    fig = plots.feature_maps(acts, layer_name=layer, image=image, max_maps=params.max_maps)
    fig.text(0.5, 0.005, f"{cfg.name} on {Path(path).name}", ha="center", fontsize=8)
    return fig
