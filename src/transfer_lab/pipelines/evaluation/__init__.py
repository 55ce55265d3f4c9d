"""evaluation: the current classifier on a folder of new photos."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
