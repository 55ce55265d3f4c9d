"""A tiny generated photo set and manifest (the columns data_ingestion writes), for unit tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from transfer_lab.data.manifest import MANIFEST_COLUMNS

COLORS = {"ant": (200, 40, 40), "bee": (40, 40, 200), "cow": (40, 200, 40)}


def make_photos(root: Path, make_image, classes=("ant", "bee"), n: int = 6, size=(48, 40)) -> dict[str, list[Path]]:
    """``n`` JPEGs per class under ``root/<class>/``: a class colour plus noise (seeded)."""
    import numpy as np
    from PIL import Image

    out = {}
    for c, cls in enumerate(classes):
        out[cls] = []
        for i in range(n):
            rng = np.random.default_rng(1000 * c + i)
            arr = np.clip(np.asarray(COLORS[cls], np.float32) + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255)
            path = root / cls / f"{cls}_{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.astype("uint8")).save(path, format="JPEG", quality=95)
            out[cls].append(path)
    return out


def manifest_for(photos: dict[str, list[Path]], duplicate: bool = True) -> pd.DataFrame:
    """train / val / test = n-2 / 1 / 1 per class; one extra row duplicating the first photo."""
    rows = []
    for cls, paths in photos.items():
        for i, p in enumerate(paths):
            split = "test" if i == 0 else "val" if i == 1 else "train"
            data = p.read_bytes()
            rows.append({"path": str(p), "label": cls, "split": split, "sha256": hashlib.sha256(data).hexdigest(),
                         "width": 48, "height": 40, "format": "JPEG", "n_bytes": len(data), "duplicate_of": "",
                         "species": ""})
    if duplicate:
        first = dict(rows[0])
        first["duplicate_of"] = first["path"]
        first["path"] = first["path"].replace(".jpg", "_copy.jpg")
        Path(first["path"]).write_bytes(Path(rows[0]["path"]).read_bytes())
        rows.append(first)
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
