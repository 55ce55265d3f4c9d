"""A folder of saliency maps: ``<name>.npy`` (the raw float map, H x W of the model's input),
``<name>.png`` (the photo under its heat map) and an index ``explanations.csv`` (``path, map,
label, probability, overlay``: ``map`` is the .npy file name), written and read as one artefact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import DatasetError

from transfer_lab.io.datasets import _FileDataset, _safe_name, _write_png
from transfer_lab.io.files import atomic_dir

INDEX = "explanations.csv"
#: The index's first columns, in this order (more columns may follow).
COLUMNS = ("path", "map", "label", "probability", "overlay")


class ExplanationFolderDataset(_FileDataset):
    """Saves ``{name: {"map": (H, W) float, "overlay": (h, w, 3) uint8, "path": ..., "label": ...,
    "probability": ..., <other index columns>}}``; saving replaces the folder whole and logs it to
    MLflow. Loading gives the same mapping back (``map`` from the .npy, ``overlay`` from the PNG)."""

    def load(self) -> dict[str, dict[str, Any]]:
        import pandas as pd

        from transfer_lab.data.imaging import load_rgb

        self._check("Explanations folder")
        index = self._filepath / INDEX
        if not index.is_file():
            raise DatasetError(f"{index} not found: the folder is not a whole set of explanations. "
                               "Run `kedro run --pipelines=explain` again.")
        out: dict[str, dict[str, Any]] = {}
        for row in pd.read_csv(index, keep_default_na=False, na_values=[""]).to_dict("records"):
            name = Path(str(row["map"])).stem
            entry = dict(row)
            entry["map"] = np.load(self._filepath / str(row["map"]), allow_pickle=False)
            entry["overlay"] = load_rgb(self._filepath / str(row["overlay"]))
            out[name] = entry
        return out

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        import pandas as pd

        rows = []
        with atomic_dir(self._filepath) as tmp:
            for name, entry in data.items():
                safe = _safe_name(name)
                saliency = np.asarray(entry["map"], dtype=np.float32)
                if saliency.ndim != 2:
                    raise DatasetError(f"explanation {name!r}: the map must be 2-D (H, W), got {saliency.shape}.")
                np.save(tmp / f"{safe}.npy", saliency, allow_pickle=False)
                _write_png(entry["overlay"], tmp / f"{safe}.png")
                row = {"path": str(entry.get("path", "")), "map": f"{safe}.npy", "overlay": f"{safe}.png",
                       "label": entry.get("label", ""), "probability": entry.get("probability", float("nan"))}
                row.update({k: v for k, v in entry.items() if k not in (*COLUMNS, "map", "overlay")})
                rows.append(row)
            frame = pd.DataFrame(rows, columns=list(dict.fromkeys([*COLUMNS, *(k for r in rows for k in r)])))
            frame.to_csv(tmp / INDEX, index=False)
        self._log()
