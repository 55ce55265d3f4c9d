"""Choosing the classifier a pipeline works on: ``<pipeline>.model: finetuned | head | imagenet``.

evaluation, visualization, adversarial (and inference) take both trained classifiers as
deferred catalog entries (``finetuned_classifier@lazy``, ``head_classifier@lazy``) and the one
parameter; :func:`pick_classifier` loads the chosen one, and fails at once, naming the pipeline
to run first, when it does not exist yet.
"""

from __future__ import annotations

from typing import Any, Callable

from transfer_lab.params.choices import WRITTEN_BY


class ModelChoiceError(ValueError):
    """The chosen classifier cannot be used; the message says what to run or choose instead."""


def require_classifier(choice: str, param: str, **deferred: Any) -> None:
    """Fail now (before any long work) when ``choice`` names a trained classifier whose file does
    not exist: ``require_classifier("finetuned", "evaluation.model", finetuned=..., head=...)``."""
    if choice not in WRITTEN_BY:
        return
    entry = deferred.get(choice)
    if entry is None or not entry.exists():
        others = [c for c in WRITTEN_BY if c != choice and deferred.get(c) is not None and deferred[c].exists()]
        alt = f", or use the one that exists: --params {param}={others[0]}" if others else ""
        raise ModelChoiceError(
            f"{param}={choice}: the {choice} classifier does not exist yet. Run `kedro run --pipelines="
            f"{WRITTEN_BY[choice]}` first{alt}."
        )


def pick_classifier(choice: str, param: str, *, imagenet: Callable[[], Any] | None = None, **deferred: Any) -> Any:
    """The chosen classifier, loaded: ``deferred[choice]()`` for a trained one, ``imagenet()``
    for the 1000-class ImageNet model."""
    if choice == "imagenet":
        if imagenet is None:
            raise ModelChoiceError(f"{param}=imagenet is not available here: use finetuned or head.")
        return imagenet()
    require_classifier(choice, param, **deferred)
    return deferred[choice]()
