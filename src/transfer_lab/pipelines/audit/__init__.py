"""audit: near-duplicates across splits, likely label errors and outliers, from the cached features."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
