"""head_training: a classifier head on cached features; backbone + head saved as the classifier."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
