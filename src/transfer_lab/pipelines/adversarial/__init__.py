"""adversarial: FGSM / PGD attacks in pixel space under an L-inf budget, robustness curves,
transfer to a second model; the attacks themselves are in :mod:`transfer_lab.models.attacks`."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
