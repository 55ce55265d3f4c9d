"""export: a trained classifier as a SavedModel and TFLite (float32, int8), with parity."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
