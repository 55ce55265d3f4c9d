"""The manifest (data/03_primary/manifest.csv): one row per accepted photo, with its label and
split. Helpers that read it the same way everywhere."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class ManifestError(ValueError):
    """The manifest does not fit what a pipeline needs; the message says what to re-run."""


def without_duplicates(manifest):
    """Manifest rows less the extra copies of identical files (``duplicate_of`` set): one copy each."""
    if "duplicate_of" not in manifest.columns:
        return manifest
    return manifest[manifest["duplicate_of"].fillna("").astype(str).str.strip() == ""]



def split_data(manifest: Any, class_names: Sequence[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{split: (paths, class indices)}`` from the manifest (duplicates skipped), labels mapped
    with the classifier's own ``class_names`` order."""
    missing = [c for c in ("path", "label", "split") if c not in manifest.columns]
    if missing:
        raise ManifestError(
            f"The manifest lacks column(s) {', '.join(missing)}. Re-run `kedro run --pipelines=data_ingestion`."
        )
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
    for split in ("train", "val", "test"):
        part = rows[rows["split"] == split]
        out[split] = (part["path"].astype(str).tolist(), np.asarray([index[str(l)] for l in part["label"]], dtype=np.int32))
    for split in ("train", "val"):
        if not out[split][0]:
            raise ManifestError(
                f"The manifest has no {split} photos; fine-tuning needs train and val splits "
                "(data.split in conf/base/parameters_data_ingestion.yml)."
            )
    return out
