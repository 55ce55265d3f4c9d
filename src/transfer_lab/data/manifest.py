"""The manifest (data/03_primary/manifest.csv): one row per accepted photo, with its label and
split. Its columns, and helpers that read it the same way everywhere."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: The columns data_ingestion writes, in this order: the photo's path, its class label, its split
#: (train | val | test), the sha256 of its bytes, its size in pixels, its format as decoded (JPEG,
#: PNG, GIF, ...), its size in bytes, the path of the first identical file ("" for an original)
#: and its species (cat | dog for the pet layouts, "" otherwise), its real path when it is a
#: symbolic link (or lies under one) that resolves outside the source folder ("" otherwise), the
#: path of its near-duplicate group's representative ("" for the representative and for a photo
#: with no near-duplicate; the whole group is in one split) and its perceptual hash
#: (transfer_lab.data.neardup.PhotoHash.hex; "" for a plain photo).
MANIFEST_COLUMNS = ("path", "label", "split", "sha256", "width", "height", "format", "n_bytes",
                    "duplicate_of", "species", "resolved_path", "near_duplicate_of", "phash")
#: The columns every reader of the manifest needs (the others are optional to a reader).
REQUIRED_COLUMNS = ("path", "label", "split")
#: The values of the ``split`` column, in the order pipelines report them.
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """The manifest does not fit what a pipeline needs; the message says what to re-run."""


def require_columns(manifest: Any, columns: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Fail, saying what to re-run, when ``manifest`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise ManifestError(
            f"The manifest lacks column(s) {', '.join(missing)}. Re-run `kedro run --pipelines=data_ingestion`."
        )


def without_duplicates(manifest):
    """Manifest rows less the extra copies of identical files (``duplicate_of`` set): one copy each.
    The one way to drop duplicate rows."""
    if "duplicate_of" not in manifest.columns:
        return manifest
    return manifest[manifest["duplicate_of"].fillna("").astype(str).str.strip() == ""]


def split_data(manifest: Any, class_names: Sequence[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{split: (paths, class indices)}`` from the manifest (duplicates skipped), labels mapped
    with the classifier's own ``class_names`` order."""
    require_columns(manifest)
    rows = without_duplicates(manifest)
    index = {str(c): i for i, c in enumerate(class_names)}
    labels = rows["label"].astype(str)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ManifestError(
            f"The manifest has labels the classifier does not know ({', '.join(unknown[:5])}"
            f"{'...' if len(unknown) > 5 else ''}): it was trained on other data. Re-run "
            "`kedro run --pipelines=feature_extraction,head_training` on this manifest, then fine_tuning."
        )
    out = {}
    for split in SPLITS:
        part = rows[rows["split"] == split]
        out[split] = (part["path"].astype(str).tolist(), np.asarray([index[str(l)] for l in part["label"]], dtype=np.int32))
    for split in ("train", "val"):
        if not out[split][0]:
            raise ManifestError(
                f"The manifest has no {split} photos; fine-tuning needs train and val splits "
                "(data.split in conf/base/parameters_data_ingestion.yml)."
            )
    return out
