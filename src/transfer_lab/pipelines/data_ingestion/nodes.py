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

from transfer_lab.data import imaging, layouts, neardup, sources
from transfer_lab.data.manifest import MANIFEST_COLUMNS, SPLITS, ManifestError, without_duplicates
from transfer_lab.params.data import DataParams

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ["path", "reason", "detail"]
CONFLICT = "conflicting_labels"
#: reason of a photo left out by data.near_duplicates.keep=one
NEAR_DUPLICATE = "near_duplicate"
#: data/08_reporting/near_duplicates.csv: one row per distinct photo in a group of near-duplicates
#: (group: the path of the group's representative, the photo keep=one keeps; match: its closest
#: fellow member; distance: bits of 255; kind: hash or hash_mirror; the group's split; the label)
NEAR_DUPLICATE_COLUMNS = ["path", "group", "match", "distance", "kind", "split", "label"]


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


def _check(path: str, min_side: int, max_pixels: int) -> tuple[imaging.ImageInfo, str] | imaging.ImageRejected:
    """The image's description and the perceptual hash of the pixels just decoded ("" for a plain
    photo), or why it is rejected. Decoding and resizing release the GIL: threads run in parallel."""
    try:
        info, img = imaging.decode_checked(path, min_side=min_side, max_pixels=max_pixels)
    except imaging.ImageRejected as exc:
        return exc
    h = neardup.photo_hash(img)
    return info, "" if h is None else h.hex()


def check_images(folder: str, refused: pd.DataFrame, data: DataParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every file with the project's decoder; accepted images with hashes (sha256 of the
    bytes, perceptual hash of the pixels), rejected with reasons."""
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
            info, phash = res
            accepted.append((path, label, info.sha256, info.width, info.height, info.format, info.n_bytes,
                             species if isinstance(species, str) else "", phash))
    images = pd.DataFrame(accepted, columns=[c for c in MANIFEST_COLUMNS
                                             if c not in ("split", "duplicate_of", "resolved_path", "near_duplicate_of")])
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


def _near_duplicate_groups(unique: pd.DataFrame, data: DataParams) -> tuple[pd.Series, pd.DataFrame]:
    """For each distinct photo (one row per sha256): the path of its group's representative (its
    own path when it has no near-duplicate), and the table rows of the groups (split to fill)."""
    hashes = [neardup.from_hex(h) if h else None for h in unique["phash"].fillna("").astype(str)]
    paths = unique["path"].astype(str).tolist()
    found = neardup.find_groups(hashes, data.near_duplicates.threshold,
                                sizes=(unique["width"] * unique["height"]).to_numpy(), workers=data.thread_count)
    rep_path = pd.Series([paths[r] for r in found.rep], index=unique.index)
    labels = unique["label"].astype(str).tolist()
    rows = [(paths[i], paths[found.rep[i]], paths[j], d, "hash_mirror" if m else "hash", "", labels[i])
            for i, (j, d, m) in sorted(found.best.items())]
    return rep_path, pd.DataFrame(rows, columns=NEAR_DUPLICATE_COLUMNS)


def split_images(
    images: pd.DataFrame, rejected: pd.DataFrame, data: DataParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """Stratified, reproducible split (``data.split``); identical files and near-duplicates
    (``data.near_duplicates``) stay together, each group in one split. Also the table of
    near-duplicates (data/08_reporting/near_duplicates.csv)."""
    fractions, seed = data.split.fractions, data.split.seed
    images = images.sort_values("path", kind="stable").reset_index(drop=True)
    if "phash" not in images.columns:
        images["phash"] = ""

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

    # Near-duplicates among the distinct photos; identical copies follow their original.
    rep_of_unique, near = _near_duplicate_groups(unique, data)
    rep_by_sha = dict(zip(unique["sha256"], rep_of_unique))
    images["_unit"] = images["sha256"].map(rep_by_sha)
    grouped = images["_unit"].isin(set(near["group"]))
    images["near_duplicate_of"] = np.where(grouped & (images["_unit"] != images["path"]), images["_unit"], "")
    unique = without_duplicates(images)
    if not near.empty:
        mixed = near.groupby("group")["label"].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            log.warning("%d group(s) of near-duplicates span two or more labels (e.g. %s): each lands in one split "
                        "with its representative's label counted; see data/08_reporting/near_duplicates.csv.",
                        len(mixed), mixed.index[0])

    dropped = pd.DataFrame(columns=REJECTED_COLUMNS)
    if data.near_duplicates.keep == "one" and not near.empty:
        rep_sha = dict(zip(unique["path"], unique["sha256"]))
        unit_sha = images["_unit"].map(rep_sha)
        drop = grouped & (images["sha256"] != unit_sha)
        detail = {r.path: f"near-duplicate of {r.group} ({r.distance} bits; data.near_duplicates.keep=one keeps "
                          "the largest photo of each group)" for r in near.itertuples(index=False)}
        dropped = pd.DataFrame({"path": images.loc[drop, "path"], "reason": NEAR_DUPLICATE,
                                "detail": [detail.get(p, detail.get(d, "near-duplicate"))
                                           for p, d in zip(images.loc[drop, "path"], images.loc[drop, "duplicate_of"])]})
        images = images[~drop].reset_index(drop=True)
        images["near_duplicate_of"] = ""  # each group is one photo now (and its identical copies)
        unique = without_duplicates(images)
        log.info("data.near_duplicates.keep=one: %d near-duplicate photo(s) left out (rejected_images.csv).",
                 len(dropped))

    # The units of the split: one per group of identical files and near-duplicates, counted
    # under the label of the group's representative.
    units = unique.loc[unique["_unit"] == unique["path"], ["_unit", "label"]]
    active = [s for s in SPLITS if fractions[s] > 0]
    counts = units.groupby("label").size()
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
        keys = units.loc[units["label"] == label, "_unit"].to_numpy()
        keys = keys[rng.permutation(len(keys))]
        n = len(keys)
        want = {s: fractions[s] * n for s in SPLITS}
        sizes = {s: (max(1, int(round(want[s]))) if fractions[s] > 0 else 0) for s in ("val", "test")}
        while sizes["val"] + sizes["test"] > n - 1:  # keep at least one training image
            big = "val" if sizes["val"] >= sizes["test"] else "test"
            sizes[big] -= 1
        n_test, n_val = sizes["test"], sizes["val"]
        for i, key in enumerate(keys):
            assignment[key] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    images["split"] = images["_unit"].map(assignment)
    manifest = images.reindex(columns=list(MANIFEST_COLUMNS))
    for column in ("duplicate_of", "near_duplicate_of", "phash"):
        manifest[column] = manifest[column].fillna("")
    rejected = pd.concat([rejected, dropped], ignore_index=True) if len(dropped) else rejected

    near["split"] = near["group"].map(assignment).fillna("")
    summary = _summary(manifest, rejected, data, near)
    for split in SPLITS:
        log.info("%s: %d images", split, int((manifest.split == split).sum()))
    if len(near):
        log.info("%d photo(s) in %d group(s) of near-duplicates, each group in one split "
                 "(data/08_reporting/near_duplicates.csv).", len(near), near["group"].nunique())
    return manifest, rejected.reset_index(drop=True), summary, near


def _summary(manifest: pd.DataFrame, rejected: pd.DataFrame, data: DataParams,
             near: pd.DataFrame) -> dict[str, Any]:
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
        "n_near_duplicates": int(len(near)),
        "n_near_duplicate_groups": int(near["group"].nunique()) if len(near) else 0,
        "n_near_duplicates_left_out": int((rejected["reason"] == NEAR_DUPLICATE).sum()) if len(rejected) else 0,
        "n_rejected": int(len(rejected)),
        "split_counts": {s: int((manifest.split == s).sum()) for s in SPLITS},
        "class_counts": per_split,
        "rejected_counts": {str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
    }
