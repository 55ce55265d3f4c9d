"""inference: photos (a file, a folder, or a CSV of base64 image bytes) -> label, probability,
top-k, per-class probabilities and the unfamiliar flag."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
