"""Nodes of data_ingestion: source -> checked images -> manifest with a reproducible split.

Every node takes the ``data`` parameters as a :class:`~transfer_lab.params.data.DataParams`, which
Kedro validates before any node runs."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from transfer_lab.data import imaging, layouts, sources
from transfer_lab.data.manifest import MANIFEST_COLUMNS, SPLITS, ManifestError, without_duplicates
from transfer_lab.params.data import DataParams

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ["path", "reason", "detail"]
CONFLICT = "conflicting_labels"


def acquire_source(data: DataParams) -> tuple[str, pd.DataFrame]:
    """The folder to read (after downloading and/or extracting ``data.source`` when needed) and the
    archive entries refused on the way. Fails at once, naming ``data.source``, when it does not exist."""
    if not sources.is_url(data.source) and not os.path.exists(os.path.expanduser(data.source)):
        raise sources.SourceError(
            f"data.source not found: {data.source}. Pass an existing folder, a .tar.gz/.tgz/.zip archive or an "
            "http(s) URL, e.g. --params \"data.source=../shared/data/PetImages\""
        )
    folder, refused = sources.materialize(data.source, data.cache_dir, checksum=data.checksum,
                                          max_extract_bytes=data.max_extract_bytes)
    return str(folder), refused


def _check(path: str, min_side: int, max_pixels: int) -> imaging.ImageInfo | imaging.ImageRejected:
    try:
        return imaging.inspect_image(path, min_side=min_side, max_pixels=max_pixels)
    except imaging.ImageRejected as exc:
        return exc


def check_images(folder: str, refused: pd.DataFrame, data: DataParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every file with the project's decoder; accepted images with hashes, rejected with reasons."""
    files, unlabelled, layout = layouts.scan(folder, data.layout, data.labels)
    log.info("Reading %s as layout '%s': %d files", folder, layout, len(files))
    if files.empty:
        raise layouts.LayoutError(
            f"No files found in {folder} for layout '{layout}'. Check data.source and data.layout."
        )
    if layout == "unlabelled":
        raise layouts.LayoutError(layouts.single_class_message(folder) or
            f"{folder} has images but no labels: use one sub-folder per class (data.layout=folders), "
            "or the Oxford-IIIT Pet or PetImages layout."
        )
    if files["label"].nunique() < 2 and layouts.single_class_message(folder):
        raise layouts.LayoutError(layouts.single_class_message(folder))
    paths = files["path"].tolist()
    with ThreadPoolExecutor(max_workers=data.thread_count) as pool:
        results = list(tqdm(
            pool.map(lambda p: _check(p, data.min_side, data.max_pixels), paths),
            total=len(paths), desc="Checking images", unit="img",
        ))
    accepted, rejected = [], []
    for (path, label, species), res in zip(files.itertuples(index=False), results):
        if isinstance(res, imaging.ImageRejected):
            rejected.append((path, res.reason, res.detail))
        else:
            accepted.append((path, label, res.sha256, res.width, res.height, res.format, res.n_bytes,
                             species if isinstance(species, str) else ""))
    images = pd.DataFrame(accepted, columns=[c for c in MANIFEST_COLUMNS if c not in ("split", "duplicate_of", "resolved_path")])
    images["resolved_path"] = sources.outside_links(folder, images["path"])
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
    images: pd.DataFrame, rejected: pd.DataFrame, data: DataParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Stratified, reproducible split (``data.split``); identical files stay together, in one split."""
    fractions, seed = data.split.fractions, data.split.seed
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
    unique = without_duplicates(images)

    active = [s for s in SPLITS if fractions[s] > 0]
    counts = unique.groupby("label").size()
    too_few = counts[counts < len(active)]
    if not too_few.empty:
        listing = ", ".join(f"'{c}' ({n})" for c, n in too_few.items())
        raise ManifestError(
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
    manifest = images.reindex(columns=list(MANIFEST_COLUMNS))
    manifest["duplicate_of"] = manifest["duplicate_of"].fillna("")

    summary = _summary(manifest, rejected, data)
    for split in SPLITS:
        log.info("%s: %d images", split, int((manifest.split == split).sum()))
    return manifest, rejected.reset_index(drop=True), summary


def _summary(manifest: pd.DataFrame, rejected: pd.DataFrame, data: DataParams) -> dict[str, Any]:
    per_split = {
        split: {str(k): int(v) for k, v in manifest[manifest.split == split].groupby("label").size().items()}
        for split in SPLITS
    }
    return {
        "source": data.source,
        "layout": data.layout,
        "labels": data.labels,
        "n_images": int(len(manifest)),
        "n_classes": int(manifest["label"].nunique()),
        "n_duplicates": int((manifest["duplicate_of"] != "").sum()),
        "n_rejected": int(len(rejected)),
        "split_counts": {s: int((manifest.split == s).sum()) for s in SPLITS},
        "class_counts": per_split,
        "rejected_counts": {str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
    }
