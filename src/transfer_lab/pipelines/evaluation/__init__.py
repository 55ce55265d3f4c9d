"""evaluation: a trained classifier (evaluation.model: finetuned | head) on a folder of new photos."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
