"""The ``feature_extraction`` parameters (conf/base/parameters_feature_extraction.yml): batching,
mirror images, the cache of earlier extractions and the feature-map figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.fields import KeyedParams, TrueFalse, param


@section("feature_extraction", conf_file="parameters_feature_extraction.yml")
class FeatureExtractionParams(KeyedParams):
    """How the photos go through the frozen backbone. A key given ``null`` takes its default, except
    ``feature_map_image`` (``null`` = the first test photo)."""

    batch_size: Literal["auto"] | int = param(
        "auto", "Photos per forward pass and replica: auto (8 on CPU, 64 on a GPU) or a whole number, 1 or more",
        32)
    flip_augment: TrueFalse = param(True, "Also extract the mirror images of the train and val photos: true or "
                                          "false", False)
    cache: TrueFalse = param(True, "Reuse an earlier extraction of the same photos, labels, splits, backbone and "
                                   "weights (kept in cache_dir): true or false", False)
    cache_dir: str = param("data/04_feature/cache", "The folder of earlier extractions, one .npz per cache key",
                           "data/04_feature/cache")
    feature_map_layer: str = param("last_conv", "A layer of the backbone (e.g. block_3_expand_relu), or "
                                                "last_conv", "block_3_expand_relu")
    feature_map_image: str | None = param(None, "A photo for the feature-map grid; null = the first test photo",
                                          "../shared/data/PetImages/Cat/1.jpg")
    max_maps: int = param(32, "Channels shown in the grid (most active first): a whole number, 1 or more", 16,
                          ge=1)
    seed: int = param(42, "The random seed (random weights): a whole number from 0 to 4294967295", 1, ge=0,
                      le=2**32 - 1)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k == "feature_map_image"}
        return data

    @field_validator("batch_size", mode="before")
    @classmethod
    def _auto_or_whole(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"feature_extraction.batch_size={value!r} is not valid: use auto or a whole number, "
                             "1 or more. E.g. --params \"feature_extraction.batch_size=32\".")
        return value

    @field_validator("max_maps", "seed", mode="before")
    @classmethod
    def _not_bool(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"feature_extraction.{info.field_name}={str(value).lower()} is not valid: it must be "
                             f"a whole number, not true or false. E.g. --params \"feature_extraction.{info.field_name}=1\".")
        return value

    @field_validator("feature_map_layer", mode="before")
    @classmethod
    def _layer(cls, value: Any) -> Any:
        return str(value).strip() or "last_conv"

    @field_validator("feature_map_image", mode="before")
    @classmethod
    def _photo_exists(cls, value: Any) -> Any:
        if value is None or str(value).strip() == "":
            return None
        path = Path(str(value).strip()).expanduser()
        if not path.is_file():
            raise ValueError(
                f"feature_extraction.feature_map_image: no such file {path}. Give a photo's path, or null for the "
                "first test photo of the manifest, e.g. --params \"feature_extraction.feature_map_image=null\".")
        return str(path)
