"""The ``data`` parameters (conf/base/parameters_data_ingestion.yml): where the photos are, how to
label them, how to split them, which images to refuse.

Whether ``data.source`` exists is checked by data_ingestion's first node (it needs the file system);
everything else is checked here, before any node runs.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.fields import KeyedParams, param

#: the official Oxford-IIIT Pet images archive (about 790 MB), checked against its published MD5
DEFAULT_SOURCE = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"
#: data.layout values (transfer_lab.data.layouts.LAYOUTS less "unlabelled", which is found, not chosen)
Layout = Literal["auto", "oxford_pets", "pet_images", "folders"]
#: data.labels values (transfer_lab.data.layouts.LABEL_MODES)
Labels = Literal["breed", "species"]

_CONF = "parameters_data_ingestion.yml"


def _whole_number(key: str, value: Any, *, allow_null: bool = False) -> Any:
    if isinstance(value, bool):
        null = " or null (one per CPU core)" if allow_null else ""
        raise ValueError(f"{key}={str(value).lower()} is not valid: it must be a whole number{null}, not true or "
                         f"false. E.g. --params \"{key}=4\".")
    return value


class SplitParams(KeyedParams):
    """``data.split``: the fractions of each class's distinct photos in train, val and test (they
    add up to 1, train above 0; 0 leaves a split empty), and the seed of the shuffle."""

    where: ClassVar[str] = "data.split"
    conf_file: ClassVar[str | None] = _CONF

    train: float = param(0.7, "The fraction in train: above 0, at most 1 (train + val + test = 1)", 0.8,
                         ge=0.0, le=1.0, allow_inf_nan=False)
    val: float = param(0.15, "The fraction in val: 0 to 1 (train + val + test = 1)", 0.1, ge=0.0, le=1.0,
                       allow_inf_nan=False)
    test: float = param(0.15, "The fraction in test: 0 to 1 (train + val + test = 1)", 0.1, ge=0.0, le=1.0,
                        allow_inf_nan=False)
    seed: int = param(42, "The seed of the split: a whole number from 0 to 4294967295", 3, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _fractions_add_up(self) -> "SplitParams":
        fr = self.fractions
        if fr["train"] <= 0:
            raise ValueError(
                f"data.split.train={fr['train']:g}: the fractions must be >= 0 with train > 0 "
                f"(train={fr['train']:g}, val={fr['val']:g}, test={fr['test']:g}). "
                "E.g. --params \"data.split.train=0.7,data.split.val=0.15,data.split.test=0.15\".")
        total = sum(fr.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"data.split fractions sum to {total:g}, not 1 (train={fr['train']:g}, val={fr['val']:g}, "
                f"test={fr['test']:g}). Change them so they add up to 1, e.g. 0.7 / 0.15 / 0.15: "
                "--params \"data.split.train=0.7,data.split.val=0.15,data.split.test=0.15\".")
        return self

    @property
    def fractions(self) -> dict[str, float]:
        """``{"train": ..., "val": ..., "test": ...}``"""
        return {"train": float(self.train), "val": float(self.val), "test": float(self.test)}


class NearDuplicateParams(KeyedParams):
    """``data.near_duplicates``: photos whose perceptual hashes (of the decoded pixels, their
    mirror and their centre) are within ``threshold`` bits of 255 form a group that lands in one
    split, as identical files do; ``keep: one`` keeps only the largest photo of each group."""

    where: ClassVar[str] = "data.near_duplicates"
    conf_file: ClassVar[str | None] = _CONF

    # Measured on ../shared (transfer_lab.data.neardup.DEFAULT_THRESHOLD): copies <= 40 bits from
    # their originals, 2 of 2,160,081 pairs of different photos under 80.
    threshold: int = param(56, "Hamming distance in bits (of 255) up to which two photos are near-duplicates: a "
                               "whole number from 0 (identical hashes only) to 128", 48, ge=0, le=128)
    keep: Literal["all", "one"] = param("all", "Use all (every photo stays, each group in one split) or one (only "
                                               "the largest photo of each group stays; the others go to "
                                               "rejected_images.csv as near_duplicate)", "one")

    @field_validator("threshold", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        return _whole_number("data.near_duplicates.threshold", value)

    @field_validator("keep", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


@section("data", conf_file=_CONF)
class DataParams(KeyedParams):
    """``data``: the photos (a folder, an archive or a URL), their layout and labels, the split,
    and the limits that reject an image. A key given ``null`` takes its default, except
    ``checksum`` and ``workers`` whose ``null`` means something (see their fields)."""

    source: str = param(DEFAULT_SOURCE, "A folder, a local archive (.tar.gz, .tgz, .zip) or an http(s) URL",
                        "../shared/data/PetImages")
    checksum: str | None = param(None, "\"sha256:<hex>\" or \"md5:<hex>\" for a URL or archive; null: the "
                                       "published checksum for known URLs, no check otherwise", "sha256:<hex>")
    layout: Layout = param("auto", "Use one of auto, oxford_pets, pet_images, folders", "folders")
    labels: Labels = param("breed", "Use breed or species (pet layouts; pet_images only has species)", "species")
    split: SplitParams = SplitParams()
    near_duplicates: NearDuplicateParams = NearDuplicateParams()
    min_side: int = param(32, "Images with a shorter side are rejected (too_small): a whole number, 1 or more",
                          64, ge=1)
    max_pixels: int = param(89_478_485, "Larger images are rejected (too_large: decompression bombs): a whole "
                                        "number of pixels, at least min_side squared", 50_000_000, ge=1)
    cache_dir: str = param("data/01_raw", "The folder for downloads and extracted archives", "data/01_raw")
    max_extract_bytes: int | None = param(None, "The most bytes an archive may extract to (archive bombs are refused): "
                                                "a whole number, 1 or more, or null: max(10 x the archive's size, "
                                                "1 GiB)", 20_000_000_000, ge=1)
    workers: int | None = param(None, "Threads that check images: a whole number, 1 or more, or null (one per "
                                      "CPU core)", 4, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            keep_null = ("checksum", "workers")
            return {k: v for k, v in data.items() if v is not None or k in keep_null}
        return data

    @field_validator("source", mode="before")
    @classmethod
    def _source_given(cls, value: Any) -> Any:
        if value is None or not str(value).strip():
            raise ValueError("data.source is empty: set it to a folder, an archive or an http(s) URL, e.g. "
                             "--params \"data.source=../shared/data/PetImages\".")
        return str(value).strip()

    @field_validator("checksum", mode="before")
    @classmethod
    def _checksum_text(cls, value: Any) -> Any:
        text = None if value is None or str(value).strip() == "" else str(value).strip()
        from transfer_lab.data.sources import parse_checksum  # its form (hex digits), before any download
        parse_checksum(text)
        return text

    @field_validator("layout", "labels", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("min_side", "max_pixels", "max_extract_bytes", mode="before")
    @classmethod
    def _whole(cls, value: Any, info: Any) -> Any:
        return _whole_number(f"data.{info.field_name}", value)

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        return _whole_number("data.workers", value, allow_null=True)

    @model_validator(mode="after")
    def _usable_size(self) -> "DataParams":
        if self.max_pixels < self.min_side * self.min_side:
            raise ValueError(
                f"data.min_side={self.min_side} and data.max_pixels={self.max_pixels} leave no usable image size: "
                f"max_pixels must be at least min_side squared ({self.min_side * self.min_side}). "
                "E.g. --params \"data.min_side=32,data.max_pixels=89478485\".")
        return self

    @property
    def thread_count(self) -> int:
        """``workers``, or one per CPU core when it is null."""
        return max(1, int(self.workers or os.cpu_count() or 1))
