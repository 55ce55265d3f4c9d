"""Two small datasets only this pipeline needs.

- :class:`LazyDataset` wraps any dataset and hands the node a zero-argument loader instead of the
  data, so a node can depend on a file it only sometimes needs (the trained classifier is not read
  when ``adversarial.model=imagenet``), and the missing-file error (with its hint) comes only when
  the file is actually needed.
- :class:`DecodedImageFolderDataset` is an :class:`~transfer_lab.datasets.ImageFolderDataset`
  whose ``load`` decodes each PNG with the project's one decoder (:func:`transfer_lab.imaging.load_rgb`),
  so the success rate is measured on what any other part of the project would read from disk.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import parse_dataset_definition

from transfer_lab.datasets import ImageFolderDataset


class LazyDataset(AbstractDataset):
    def __init__(self, dataset: dict[str, Any], metadata: dict[str, Any] | None = None):
        cls, kwargs = parse_dataset_definition(dict(dataset))
        self._inner = cls(**kwargs)
        self.metadata = metadata

    def load(self) -> Callable[[], Any]:
        return self._inner.load

    def save(self, data: Any) -> None:
        raise DatasetError("LazyDataset is read-only: save through the wrapped dataset's own catalog entry.")

    def _describe(self) -> dict[str, Any]:
        return {"dataset": self._inner._describe()}

    def _exists(self) -> bool:
        return self._inner.exists()


class DecodedImageFolderDataset(ImageFolderDataset):
    def load(self) -> dict[str, np.ndarray]:
        from transfer_lab.imaging import load_rgb

        self._check("Image folder")
        return {p.stem: load_rgb(p) for p in sorted(self._filepath.glob("*.png"))}
