"""A dataset only this pipeline needs (``LazyDataset`` now lives in :mod:`transfer_lab.io.datasets`
and is re-exported here for catalogs that name it by this path).

- :class:`DecodedImageFolderDataset` is an :class:`~transfer_lab.io.datasets.ImageFolderDataset`
  whose ``load`` decodes each PNG with the project's one decoder (:func:`transfer_lab.data.imaging.load_rgb`),
  so the success rate is measured on what any other part of the project would read from disk.
"""

from __future__ import annotations

import numpy as np

from transfer_lab.io.datasets import ImageFolderDataset, LazyDataset  # noqa: F401  (LazyDataset: moved, kept importable here)


class DecodedImageFolderDataset(ImageFolderDataset):
    def load(self) -> dict[str, np.ndarray]:
        from transfer_lab.data.imaging import load_rgb

        self._check("Image folder")
        return {p.stem: load_rgb(p) for p in sorted(self._filepath.glob("*.png"))}
