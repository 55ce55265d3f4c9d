"""explain: saliency maps (Grad-CAM, Integrated Gradients, SmoothGrad) for any photo, saved for
others to check, and their faithfulness (deletion test, sanity check)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
