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


# ------------------------------------------------------------------------------------------
# The model a pipeline studies and its class names (visualization, adversarial: written once)


def imagenet_size(backbone: Any, image_size: int | None = None) -> int:
    """The input size of the 1000-class ImageNet model: ``<pipeline>.image_size``, else
    ``backbone.image_size``."""
    return int(image_size or backbone.size)


def studied_model(choice: str, param: str, backbone: Any, *, finetuned: Any, head: Any,
                  image_size: int | None = None) -> Any:
    """The model ``<pipeline>.model`` names, loaded: a trained classifier (fails naming the
    pipeline to run when it does not exist) or backbone.name with its ImageNet top."""
    from transfer_lab.models.backbones import build_imagenet_classifier

    def imagenet() -> Any:
        return build_imagenet_classifier(backbone.name, backbone.classifier_weights,
                                         image_size=imagenet_size(backbone, image_size), alpha=backbone.alpha)

    return pick_classifier(choice, param, imagenet=imagenet, finetuned=finetuned, head=head)


def studied_class_names(choice: str, backbone: Any, class_names: Any) -> list[str]:
    """The class names of the studied model: the 1000 ImageNet names, or the trained classifiers'
    ``class_names`` (a deferred catalog entry, loaded only here)."""
    from transfer_lab.models.backbones import imagenet_class_names

    if choice == "imagenet":
        return imagenet_class_names(backbone.imagenet_labels)
    return [str(c) for c in (class_names() if callable(class_names) else class_names)]


def model_label(choice: str, backbone: Any, image_size: int | None = None) -> str:
    """How reports name the studied model."""
    if choice == "imagenet":
        return f"{backbone.name} (ImageNet, {imagenet_size(backbone, image_size)} px)"
    file = {"finetuned": "finetuned_classifier", "head": "head_classifier"}[choice]
    return f"{choice} classifier (data/06_models/{file}.keras, from {WRITTEN_BY[choice]})"


def second_model(spec: Any, size: int, backbone: Any) -> tuple[Any, list[str]]:
    """A second ImageNet model (``visualization.second_model``, ``adversarial.transfer``: an
    :class:`~transfer_lab.params.choices.ImageNetModelParams`) at ``spec.image_size`` or ``size``,
    and its 1000 class names (``spec.labels``, else ``backbone.imagenet_labels``)."""
    from transfer_lab.models.backbones import build_imagenet_classifier, imagenet_class_names

    model = build_imagenet_classifier(spec.name, spec.weights, image_size=int(spec.image_size or size),
                                      alpha=spec.alpha, param=f"{spec.where}.weights")
    return model, imagenet_class_names(spec.labels or backbone.imagenet_labels)
