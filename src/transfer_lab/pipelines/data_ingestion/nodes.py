"""Nodes of data_ingestion: source -> checked images -> manifest with a reproducible split."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from transfer_lab.data import imaging, layouts, sources

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["path", "label", "split", "sha256", "width", "height", "format", "n_bytes", "duplicate_of", "species"]
REJECTED_COLUMNS = ["path", "reason", "detail"]
SPLITS = ("train", "val", "test")
CONFLICT = "conflicting_labels"

DEFAULT_SOURCE = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"


class IngestionParameterError(ValueError):
    """A data.* parameter is wrong; the message names it and the fix."""


def _fractions(split: dict[str, Any]) -> tuple[dict[str, float], int]:
    if not isinstance(split, dict):
        raise IngestionParameterError("data.split must be a mapping with train, val, test and seed.")
    unknown = set(split) - {"train", "val", "test", "seed"}
    if unknown:
        raise IngestionParameterError(
            f"Unknown key(s) in data.split: {', '.join(sorted(unknown))}. Use train, val, test and seed."
        )
    try:
        fr = {k: float(split.get(k, 0.0)) for k in SPLITS}
        seed = int(split.get("seed", 42))
    except (TypeError, ValueError):
        raise IngestionParameterError(
            f"data.split values must be numbers, got {split}. Example: --params data.split.train=0.7"
        ) from None
    if any(v < 0 for v in fr.values()) or fr["train"] <= 0:
        raise IngestionParameterError(
            f"data.split fractions must be >= 0 with train > 0, got train={fr['train']}, val={fr['val']}, test={fr['test']}."
        )
    total = sum(fr.values())
    if abs(total - 1.0) > 1e-6:
        raise IngestionParameterError(
            f"data.split fractions sum to {total:g}, not 1 (train={fr['train']}, val={fr['val']}, test={fr['test']}). "
            "Change them so they add up to 1, e.g. 0.7 / 0.15 / 0.15."
        )
    return fr, seed


def validate_parameters(data: dict[str, Any]) -> dict[str, Any]:
    """Check every data.* parameter before any work is done; return them normalised."""
    if not isinstance(data, dict):
        raise IngestionParameterError("The `data` parameters are missing: see conf/base/parameters_data_ingestion.yml.")
    known = {"source", "checksum", "layout", "labels", "split", "min_side", "max_pixels", "cache_dir", "workers"}
    unknown = set(data) - known
    if unknown:
        raise IngestionParameterError(
            f"Unknown data parameter(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}."
        )
    source = data.get("source")
    if source is None or str(source).strip() == "":
        raise IngestionParameterError("data.source is empty: set it to a folder, an archive or an http(s) URL.")
    if not sources.is_url(str(source)) and not os.path.exists(os.path.expanduser(str(source))):
        raise IngestionParameterError(
            f"data.source not found: {source}. Pass an existing folder, a .tar.gz/.tgz/.zip archive or an http(s) "
            "URL, e.g. --params data.source=../shared/data/PetImages"
        )
    layout = data.get("layout", "auto")
    if layout not in layouts.LAYOUTS or layout == "unlabelled":
        raise IngestionParameterError(
            f"Unknown data.layout '{layout}': use auto, oxford_pets, pet_images or folders."
        )
    labels = data.get("labels", "breed")
    if labels not in layouts.LABEL_MODES:
        raise IngestionParameterError(f"Unknown data.labels '{labels}': use breed or species.")
    fractions, seed = _fractions(data.get("split", {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 42}))
    try:
        min_side = int(data.get("min_side", imaging.DEFAULT_MIN_SIDE))
        max_pixels = int(data.get("max_pixels", imaging.DEFAULT_MAX_PIXELS))
        workers = int(data.get("workers") or os.cpu_count() or 1)
    except (TypeError, ValueError):
        raise IngestionParameterError("data.min_side, data.max_pixels and data.workers must be whole numbers.") from None
    if min_side < 1 or max_pixels < min_side * min_side:
        raise IngestionParameterError(
            f"data.min_side={min_side} and data.max_pixels={max_pixels} leave no usable image size."
        )
    return {
        "source": str(source),
        "checksum": data.get("checksum"),
        "layout": layout,
        "labels": labels,
        "fractions": fractions,
        "seed": seed,
        "min_side": min_side,
        "max_pixels": max_pixels,
        "cache_dir": str(data.get("cache_dir") or "data/01_raw"),
        "workers": max(1, workers),
    }


def acquire_source(params: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Download and/or extract the source when needed; the folder to read and refused archive entries."""
    folder, refused = sources.materialize(params["source"], params["cache_dir"], checksum=params.get("checksum"))
    return {"folder": str(folder), **params}, refused


def _check(path: str, min_side: int, max_pixels: int) -> imaging.ImageInfo | imaging.ImageRejected:
    try:
        return imaging.inspect_image(path, min_side=min_side, max_pixels=max_pixels)
    except imaging.ImageRejected as exc:
        return exc


def check_images(source: dict[str, Any], refused: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every file with the project's decoder; accepted images with hashes, rejected with reasons."""
    from tqdm.auto import tqdm

    files, unlabelled, layout = layouts.scan(source["folder"], source["layout"], source["labels"])
    log.info("Reading %s as layout '%s': %d files", source["folder"], layout, len(files))
    if files.empty:
        raise IngestionParameterError(
            f"No files found in {source['folder']} for layout '{layout}'. Check data.source and data.layout."
        )
    if layout == "unlabelled":
        raise IngestionParameterError(
            f"{source['folder']} has images but no labels: use one sub-folder per class (data.layout=folders), "
            "or the Oxford-IIIT Pet or PetImages layout."
        )
    paths = files["path"].tolist()
    with ThreadPoolExecutor(max_workers=source["workers"]) as pool:
        results = list(tqdm(
            pool.map(lambda p: _check(p, source["min_side"], source["max_pixels"]), paths),
            total=len(paths), desc="Checking images", unit="img",
        ))
    accepted, rejected = [], []
    for (path, label, species), res in zip(files.itertuples(index=False), results):
        if isinstance(res, imaging.ImageRejected):
            rejected.append((path, res.reason, res.detail))
        else:
            accepted.append((path, label, res.sha256, res.width, res.height, res.format, res.n_bytes,
                             species if isinstance(species, str) else ""))
    images = pd.DataFrame(accepted, columns=["path", "label", "sha256", "width", "height", "format", "n_bytes", "species"])
    rejected_df = pd.concat(
        [refused.reindex(columns=REJECTED_COLUMNS), unlabelled.reindex(columns=REJECTED_COLUMNS),
         pd.DataFrame(rejected, columns=REJECTED_COLUMNS)],
        ignore_index=True,
    )
    if not rejected_df.empty:
        counts = rejected_df["reason"].value_counts().to_dict()
        log.warning("Rejected %d file(s): %s (see data/08_reporting/rejected_images.csv)",
                    len(rejected_df), ", ".join(f"{k} {v}" for k, v in counts.items()))
    return images, rejected_df


def split_images(
    images: pd.DataFrame, rejected: pd.DataFrame, source: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Stratified, reproducible split; identical files stay together, in one split."""
    fractions, seed = source["fractions"], source["seed"]
    images = images.sort_values("path", kind="stable").reset_index(drop=True)

    # Same bytes under different labels: no way to tell which is right.
    label_sets = images.groupby("sha256")["label"].nunique()
    conflicting = set(label_sets[label_sets > 1].index)
    if conflicting:
        bad = images[images["sha256"].isin(conflicting)]
        extra = pd.DataFrame({
            "path": bad["path"],
            "reason": CONFLICT,
            "detail": [
                "identical bytes appear under labels " + ", ".join(sorted(images.loc[images.sha256 == h, "label"].unique()))
                for h in bad["sha256"]
            ],
        })
        rejected = pd.concat([rejected, extra], ignore_index=True)
        images = images[~images["sha256"].isin(conflicting)].reset_index(drop=True)

    first = images.groupby("sha256")["path"].transform("first")
    images["duplicate_of"] = np.where(first != images["path"], first, "")
    unique = images[images["duplicate_of"] == ""]

    active = [s for s in SPLITS if fractions[s] > 0]
    counts = unique.groupby("label").size()
    too_few = counts[counts < len(active)]
    if not too_few.empty:
        listing = ", ".join(f"'{c}' ({n})" for c, n in too_few.items())
        raise IngestionParameterError(
            f"Class(es) with too few distinct images to split into {', '.join(active)}: {listing}. "
            f"Each class needs at least {len(active)}. Add photos to these classes, remove their folders, "
            "or set a data.split fraction to 0."
        )

    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(counts.index):
        hashes = unique.loc[unique["label"] == label, "sha256"].to_numpy()
        hashes = hashes[rng.permutation(len(hashes))]
        n = len(hashes)
        want = {s: fractions[s] * n for s in SPLITS}
        sizes = {s: (max(1, int(round(want[s]))) if fractions[s] > 0 else 0) for s in ("val", "test")}
        while sizes["val"] + sizes["test"] > n - 1:  # keep at least one training image
            big = "val" if sizes["val"] >= sizes["test"] else "test"
            sizes[big] -= 1
        n_test, n_val = sizes["test"], sizes["val"]
        for i, h in enumerate(hashes):
            assignment[h] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    images["split"] = images["sha256"].map(assignment)
    manifest = images.reindex(columns=MANIFEST_COLUMNS)
    manifest["duplicate_of"] = manifest["duplicate_of"].fillna("")

    summary = _summary(manifest, rejected, source)
    for split in SPLITS:
        log.info("%s: %d images", split, int((manifest.split == split).sum()))
    return manifest, rejected.reset_index(drop=True), summary


def _summary(manifest: pd.DataFrame, rejected: pd.DataFrame, source: dict[str, Any]) -> dict[str, Any]:
    per_split = {
        split: {str(k): int(v) for k, v in manifest[manifest.split == split].groupby("label").size().items()}
        for split in SPLITS
    }
    return {
        "source": source["source"],
        "layout": source["layout"],
        "labels": source["labels"],
        "n_images": int(len(manifest)),
        "n_classes": int(manifest["label"].nunique()),
        "n_duplicates": int((manifest["duplicate_of"] != "").sum()),
        "n_rejected": int(len(rejected)),
        "split_counts": {s: int((manifest.split == s).sum()) for s in SPLITS},
        "class_counts": per_split,
        "rejected_counts": {str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
    }
