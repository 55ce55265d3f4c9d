"""data_ingestion: a verified, deduplicated, stratified and reproducible split of the photos."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
