"""serving: the step after head_training that fits the unfamiliar-photo statistics and logs and
registers the serving model."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
