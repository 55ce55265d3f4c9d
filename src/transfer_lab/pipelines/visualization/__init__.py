"""visualization: "ideal" class images by gradient ascent on a class's pre-softmax score (the
optimisation is in :mod:`transfer_lab.models.ideal`), and feature maps of chosen layers for one photo."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
