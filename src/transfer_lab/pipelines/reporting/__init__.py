"""reporting: one Markdown report of the whole run, with its key figures and images."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
