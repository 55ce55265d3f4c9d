"""Activations of named layers for an image: the "features extracted by the network" of the seed
lesson. Used by feature_extraction (a feature-map grid of one layer) and visualization.

Works on every model built by :mod:`transfer_lab.models.backbones` (feature extractors, classifiers,
ImageNet classifiers) and on a bare backbone. Layer names are looked up first among the model's
own layers (``pool``, ``logits``, ...), then inside its backbone (``block_16_project``,
``Conv_1``, ``block5_conv3``, ...). Images are RGB 0-255, as everywhere in this project.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from transfer_lab.models.backbones import BackboneError, backbone_of, last_conv_layer


def _find_backbone(model: Any) -> Any | None:
    try:
        return backbone_of(model)
    except BackboneError:
        return None


def default_layer(model: Any) -> str:
    """The last convolutional (4-D output) layer of the model's backbone."""
    inner = _find_backbone(model)
    return last_conv_layer(inner if inner is not None else model)


def resolve_layer_names(model: Any, layer_names: str | Sequence[str] | None, param: str = "layer") -> list[str]:
    """``None``/``"last_conv"``/``"auto"`` -> the last conv layer; unknown names fail listing near matches."""
    import difflib

    if layer_names is None or (isinstance(layer_names, str) and layer_names.strip().lower() in ("", "auto", "last_conv", "none")):
        return [default_layer(model)]
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    inner = _find_backbone(model)
    known = [layer.name for layer in model.layers] + ([layer.name for layer in inner.layers] if inner is not None else [])
    out = []
    for name in names:
        name = str(name).strip()
        if name.lower() in ("auto", "last_conv"):
            out.append(default_layer(model))
            continue
        if name not in known:
            near = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            hint = f" Near matches: {', '.join(near)}." if near else ""
            raise BackboneError(
                f"{param}: no layer named '{name}' in {model.name}.{hint} Use 'last_conv' for the last "
                f"convolutional layer, or a layer name from model.summary() / the backbone's summary."
            )
        out.append(name)
    return out


def _fit_images(image: np.ndarray, model: Any) -> np.ndarray:
    """(H, W, 3) or (N, H, W, 3) 0-255 -> float32 batch at the model's input size."""
    from PIL import Image

    from transfer_lab.data.imaging import resize_rgb

    arr = np.asarray(image)
    batch = arr[None] if arr.ndim == 3 else arr
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or a batch (N, H, W, 3), got shape {arr.shape}")
    h, w = model.input_shape[1], model.input_shape[2]
    if h is not None and w is not None and batch.shape[1:3] != (h, w):
        batch = np.stack([
            np.asarray(resize_rgb(Image.fromarray(np.clip(np.rint(b), 0, 255).astype(np.uint8)), (h, w)))
            for b in batch
        ])
    return batch.astype(np.float32)


def activation_model(model: Any, layer_names: Sequence[str]) -> Any:
    """A model from the 0-255 input of ``model`` to the outputs of ``layer_names`` (a list)."""
    import keras

    top_names = {layer.name for layer in model.layers}
    inner = _find_backbone(model)
    if inner is None or inner is model:
        # A bare backbone (or any plain functional model): its layers are called once.
        return keras.Model(model.inputs, [model.get_layer(n).output for n in layer_names])
    # A project model (preprocess -> backbone -> pool -> head layers), a chain. Re-apply its layers
    # in order on a fresh input: its head layers may also be called in a separate head model, so
    # ``layer.output`` could belong to that other graph. Inside the nested backbone, a sub-model
    # gives the wanted inner layers.
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    outputs: dict[str, Any] = {}
    wanted_inner = [n for n in layer_names if n not in top_names]
    for layer in model.layers[1:]:
        if layer is inner and wanted_inner:
            sub = keras.Model(inner.inputs, [inner.get_layer(n).output for n in wanted_inner])
            res = sub(x, training=False)
            res = res if isinstance(res, (list, tuple)) else [res]
            outputs.update(dict(zip(wanted_inner, res)))
            if all(n in outputs for n in layer_names):
                break
        x = layer(x, training=False) if layer is inner else layer(x)
        if layer.name in layer_names:
            outputs[layer.name] = x
        if all(n in outputs for n in layer_names):
            break
    missing = [n for n in layer_names if n not in outputs]
    if missing:
        raise BackboneError(f"layer(s) {', '.join(missing)} not found in {model.name}")
    return keras.Model(inputs, [outputs[n] for n in layer_names])


def layer_activations(model: Any, layer_names: str | Sequence[str] | None, image: np.ndarray) -> dict[str, np.ndarray]:
    """``{layer name: activation}`` of ``model`` for ``image`` (RGB 0-255).

    ``image`` (H, W, 3) gives activations without the batch axis, e.g. (7, 7, 1280); a batch
    (N, H, W, 3) keeps it. Images of another size are resized to the model's input first.
    ``layer_names`` None or "last_conv" means the backbone's last convolutional layer.
    """
    names = resolve_layer_names(model, layer_names)
    single = np.asarray(image).ndim == 3
    batch = _fit_images(image, model)
    sub = activation_model(model, names)
    res = sub(batch, training=False)
    res = res if isinstance(res, (list, tuple)) else [res]
    import keras

    out = {}
    for name, value in zip(names, res):
        arr = keras.ops.convert_to_numpy(value)  # any backend's tensor (a torch one has no __array__ on GPU)
        out[name] = arr[0] if single else arr
    return out
