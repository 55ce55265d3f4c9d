"""Which part of a backbone fine-tuning trains: ``fine_tuning.unfreeze`` resolved to layers,
made trainable with every BatchNormalization layer kept frozen.

BatchNorm: in Keras 3, ``backbone(x, training=False)`` does *not* keep BatchNormalization in
inference mode once the backbone is trainable again (the outer model's ``training`` flag wins).
The only thing that does is ``layer.trainable = False`` on every BatchNormalization layer, which
:func:`unfreeze_top` always does. (The MobileNetV2 weights in ../shared have BN folded: batch
statistics would wreck them.)
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from transfer_lab.models.backbones import all_layers, backbone_of, get_spec, layer_groups
from transfer_lab.models.training import FineTuneError
from transfer_lab.params.fine_tuning import UNFREEZE_HELP
from transfer_lab.params.fine_tuning import parse_unfreeze as unfreeze_syntax


def parse_unfreeze(value: Any) -> tuple[str, Any]:
    """``("blocks", n)``, ``("layers", n)``, ``("all", None)`` or ``("name", str)``
    (:func:`transfer_lab.params.fine_tuning.parse_unfreeze`, raising FineTuneError)."""
    try:
        return unfreeze_syntax(value)
    except ValueError as exc:
        raise FineTuneError(str(exc)) from None


def _weight_layers(backbone: Any) -> list[Any]:
    return [l for l in backbone.layers if l.__class__.__name__ != "InputLayer"]


def resolve_unfreeze(backbone: Any, backbone_name: str, unfreeze: Any) -> dict[str, Any]:
    """Which backbone layers ``unfreeze`` selects: ``{"first_layer", "start", "n_layers",
    "blocks", "description"}``; ``start`` indexes the backbone's non-input layers.

    Raises FineTuneError when it asks for more layers or blocks than exist, or names no layer."""
    kind, arg = parse_unfreeze(unfreeze)
    layers = _weight_layers(backbone)
    spec = get_spec(backbone_name)
    groups = layer_groups(backbone, spec)
    starts, idx = [], 0
    for _, members in groups:
        starts.append(idx)
        idx += len(members)
    if kind == "all":
        start = 0
    elif kind == "blocks":
        if arg > len(groups):
            raise FineTuneError(
                f"fine_tuning.unfreeze={unfreeze!r} asks for {arg} blocks but {backbone_name} has only {len(groups)} "
                f"(top ones: {', '.join(g for g, _ in groups[::-1][:5])}). Use 1..{len(groups)}, or 'all'."
            )
        start = starts[len(groups) - arg]
    elif kind == "layers":
        if arg > len(layers):
            raise FineTuneError(
                f"fine_tuning.unfreeze={unfreeze!r} asks for {arg} layers but {backbone_name} has only {len(layers)}. "
                f"Use 1..{len(layers)}, a block count like '3 blocks', or 'all'."
            )
        start = len(layers) - arg
    else:
        block_names = [g for g, _ in groups]
        layer_names = [l.name for l in layers]
        if arg in block_names:
            start = starts[block_names.index(arg)]
        elif arg in layer_names:
            start = layer_names.index(arg)
        else:
            near = difflib.get_close_matches(arg, block_names + layer_names, n=5, cutoff=0.6)
            raise FineTuneError(
                f"fine_tuning.unfreeze={arg!r} is not a block or layer of {backbone_name}."
                + (f" Near matches: {', '.join(near)}." if near else "")
                + f" Blocks, top first: {', '.join(block_names[::-1][:8])}, ... {UNFREEZE_HELP}"
            )
    chosen = layers[start:]
    blocks = [g for (g, members), s in zip(groups, starts) if s + len(members) > start]
    return {
        "start": start,
        "first_layer": layers[start].name,
        "n_layers": len(chosen),
        "blocks": blocks,
        "description": f"{len(chosen)} of {len(layers)} backbone layers, from {layers[start].name} to the top",
    }


def unfreeze_top(model: Any, backbone_name: str, unfreeze: Any) -> dict[str, Any]:
    """Make the top of ``model``'s backbone trainable (in place); every BatchNormalization layer
    stays frozen (``trainable = False``, hence inference mode in ``fit``). The head stays trainable.

    Returns what was selected plus trainable parameter counts."""
    import keras

    backbone = backbone_of(model)
    sel = resolve_unfreeze(backbone, backbone_name, unfreeze)
    backbone.trainable = True  # cascades to every sub-layer; then freeze below the cut
    for i, layer in enumerate(_weight_layers(backbone)):
        layer.trainable = i >= sel["start"]
    n_bn = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            n_bn += 1
    sel["n_batchnorm_frozen"] = n_bn
    sel["trainable_params"] = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    sel["total_params"] = int(sum(np.prod(v.shape) for v in model.weights))
    return sel


def refreeze(model: Any) -> None:
    """Freeze the backbone again (as head_training leaves it) before the model is saved."""
    backbone_of(model).trainable = False


