"""fine_tuning: unfreeze the top of the backbone of head_training's classifier and train it further."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
