"""feature_extraction: pooled backbone features of every photo, cached."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
