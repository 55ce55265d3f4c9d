"""The backbone builders, and the model contract of the whole project.

The ``backbone`` parameters are :class:`transfer_lab.params.backbone.BackboneParams`; the builders
here take one (``cfg``: ``name``, ``weights``, ``size``, ``alpha``, ``spec``). The registry of
networks is :mod:`transfer_lab.models.backbone_registry` (its names are re-exported here); this
module imports no parameters model, so nothing imports in a circle.

Every model built here takes **RGB pixels in 0-255** (float32, shape (None, H, W, 3)); the
backbone's own preprocessing is a layer inside the model. Classifiers end with two named layers,
``logits`` (pre-softmax class scores) and ``probabilities`` (softmax), and their layers are:

    input -> "preprocess" -> "backbone" -> "pool" -> "head" (dropout + "logits") -> "probabilities"

so pipelines can find the backbone (fine-tuning, feature maps) and the logits (visualisation,
attacks) by name. Preprocessing is built from stock Keras layers only, so saved models load
anywhere (``keras.saving.load_model``, ``mlflow.pyfunc.load_model``) without custom objects.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from transfer_lab.models.backbone_registry import (  # noqa: F401  (re-exported: the registry's public names)
    BACKBONES,
    BackboneError,
    BackboneSpec,
    get_spec,
)

# Preprocessing styles of keras.applications:
#   "tf":    x / 127.5 - 1                                  (MobileNet v1/v2, ResNetV2)
#   "caffe": RGB -> BGR, minus the ImageNet BGR mean       (VGG, ResNet50)
#   "none":  the model rescales by itself                  (EfficientNet, MobileNetV3)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def resolve_weights(weights: Any) -> str | None:
    """``None`` (random), ``"imagenet"`` or the path of an existing weights file; fails clearly otherwise."""
    if weights is None:
        return None
    text = str(weights).strip()
    if text.lower() in ("", "none", "null", "random"):
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    path = Path(text).expanduser()
    if not path.is_file():
        raise BackboneError(
            f"backbone weights file not found: {path}. Set backbone.weights to an existing Keras weights "
            "file (.weights.h5 or .h5), to 'imagenet' to download Keras's file, or to 'none' for random weights."
        )
    return str(path)


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _call_constructor(spec: BackboneSpec, weights: Any, *, include_top: bool, size: int, alpha: float, param: str) -> Any:
    """Build a keras.applications model, turning download and file failures into clear errors."""
    ctor = spec.keras_constructor()
    kwargs: dict[str, Any] = {"include_top": include_top, "input_shape": (size, size, 3)}
    if spec.has_alpha:
        kwargs["alpha"] = alpha
    if include_top:
        kwargs["classifier_activation"] = None  # we add "logits" -> "probabilities" ourselves
    if spec.preprocessing == "none":
        kwargs["include_preprocessing"] = True
    resolved = resolve_weights(weights)
    if resolved == "imagenet":
        try:
            return ctor(weights="imagenet", **kwargs)
        except Exception as exc:  # URLError, HTTPError, or Keras's "URL fetch failure"
            fname = spec.weights_file(alpha, size, include_top)
            raise BackboneError(
                f"Could not get the ImageNet weights of {spec.name} ({fname or 'its weights file'}); "
                f"Keras downloads it into {_keras_cache_dir()} and that failed: {type(exc).__name__}: {exc}. "
                f"If you are offline, pass a local copy instead: --params {param}=/path/to/"
                f"{fname or 'weights.h5'} (or put the file in {_keras_cache_dir()})."
            ) from exc
    model = ctor(weights=None, **kwargs)
    if resolved is not None:
        try:
            model.load_weights(resolved)
        except Exception as exc:
            raise BackboneError(
                f"The weights in {resolved} do not fit {spec.name}"
                f"{f' alpha={alpha}' if spec.has_alpha else ''} with include_top={include_top}: {exc}. "
                f"Check {param} (a file made for this architecture"
                f"{', without its top' if not include_top else ', with its 1000-class top'})."
            ) from exc
    return model


def preprocessing_layer(preprocessing: str, name: str = "preprocess") -> Any:
    """Stock-Keras layers mapping 0-255 RGB to what the backbone expects."""
    import keras

    if preprocessing == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)
    if preprocessing == "caffe":
        # RGB -> BGR and minus mean, as one fixed 1x1 convolution (exact).
        perm = np.zeros((1, 1, 3, 3), dtype="float32")
        for i in range(3):
            perm[0, 0, 2 - i, i] = 1.0
        layer = keras.layers.Conv2D(
            3, 1, use_bias=True, trainable=False, name=name,
            kernel_initializer=keras.initializers.Constant(perm),
            bias_initializer=keras.initializers.Constant(-np.array(_CAFFE_MEAN_BGR, dtype="float32")),
        )
        return layer
    if preprocessing == "none":
        return keras.layers.Identity(name=name)
    raise BackboneError(f"unknown preprocessing style {preprocessing!r}")


def build_backbone(cfg: Any) -> Any:
    """The bare keras.applications backbone (no top), named ``backbone``; expects preprocessed input."""
    spec = cfg.spec
    model = _call_constructor(spec, cfg.weights, include_top=False, size=cfg.size, alpha=cfg.alpha, param="backbone.weights")
    model.name = "backbone"
    return model


def build_feature_extractor(cfg: Any, backbone: Any | None = None) -> Any:
    """0-255 RGB in, globally average-pooled backbone features out."""
    import keras

    backbone = backbone if backbone is not None else build_backbone(cfg)
    inputs = keras.Input((cfg.size, cfg.size, 3), name="image")
    x = preprocessing_layer(cfg.spec.preprocessing)(inputs)
    x = backbone(x, training=False)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name=f"{cfg.name}_features")


def build_head(n_features: int, n_classes: int, dropout: float = 0.2, l2: float = 0.0) -> Any:
    """Dropout + dense ``logits`` + softmax ``probabilities``, on pooled features."""
    import keras

    inputs = keras.Input((n_features,), name="features")
    x = keras.layers.Dropout(dropout, name="dropout")(inputs) if dropout else inputs
    reg = keras.regularizers.L2(l2) if l2 else None
    logits = keras.layers.Dense(n_classes, name="logits", kernel_regularizer=reg)(x)
    probs = keras.layers.Activation("softmax", name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probs, name="head")


def build_classifier(cfg: Any, head: Any, backbone: Any | None = None) -> Any:
    """Backbone + trained head as one model: 0-255 RGB in, class probabilities out.

    The head's layers are inlined (not nested), so ``logits`` is reachable by name.
    """
    import keras

    backbone = backbone if backbone is not None else build_backbone(cfg)
    inputs = keras.Input((cfg.size, cfg.size, 3), name="image")
    x = preprocessing_layer(cfg.spec.preprocessing)(inputs)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    for layer in head.layers[1:]:  # skip the InputLayer
        # A copy of each head layer (same config and weights), not the layer itself: a layer called
        # in two models reports the first model's tensor as ``layer.output``, which would break
        # ``logits_model(classifier)`` and feature-map models built in the same process.
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    return keras.Model(inputs, x, name=f"{cfg.name}_classifier")


def build_imagenet_classifier(
    name: str = "mobilenet_v2",
    weights: Any = "imagenet",
    *,
    image_size: int | None = None,
    alpha: float = 1.0,
    param: str = "backbone.classifier_weights",
) -> Any:
    """A keras.applications network with its 1000-class top, under the project's contract."""
    import keras

    spec = get_spec(name)
    size = int(image_size or spec.default_size)
    net = _call_constructor(spec, weights, include_top=True, size=size, alpha=alpha, param=param)
    inputs = keras.Input((size, size, 3), name="image")
    x = preprocessing_layer(spec.preprocessing)(inputs)
    x = net(x, training=False)
    logits = keras.layers.Identity(name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probs, name=f"{spec.name}_imagenet")


def logits_model(model: Any) -> Any:
    """The same network, returning the pre-softmax ``logits`` instead of probabilities."""
    import keras

    try:
        layer = model.get_layer("logits")
    except ValueError:
        raise BackboneError(
            f"model {model.name!r} has no layer named 'logits'; build it with transfer_lab.models.backbones."
        ) from None
    return keras.Model(model.inputs, layer.output, name=f"{model.name}_logits")


def all_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model``, nested models' layers included, depth first."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def backbone_of(model: Any) -> Any:
    """The inner ``backbone`` model of a classifier or feature extractor."""
    try:
        return model.get_layer("backbone")
    except ValueError:
        # keras.applications top models are nested under their own names
        for layer in model.layers:
            if hasattr(layer, "layers") and len(layer.layers) > 5:
                return layer
        raise BackboneError(f"model {model.name!r} has no backbone inside") from None


def last_conv_layer(backbone: Any) -> str:
    """Name of the backbone's last layer with a spatial (4-D) output."""
    for layer in reversed(backbone.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4:
            return layer.name
    raise BackboneError(f"{backbone.name} has no convolutional layer")


def layer_groups(backbone: Any, spec: BackboneSpec | None = None) -> list[tuple[str, list[Any]]]:
    """The backbone's layers in order, grouped into blocks (``block_16``, ``conv5_block3``, ...).

    Layers that match no block pattern join the block before them. Fine-tuning unfreezes whole
    blocks from the top.
    """
    pattern = re.compile(spec.block_pattern) if spec is not None else None
    groups: list[tuple[str, list[Any]]] = []
    for layer in backbone.layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        match = pattern.match(layer.name) if pattern else None
        key = match.group(1) if match else (groups[-1][0] if groups else layer.name)
        if not groups or groups[-1][0] != key:
            groups.append((key, [layer]))
        else:
            groups[-1][1].append(layer)
    return groups


def imagenet_class_names(labels: str | None = None) -> list[str]:
    """The 1000 ImageNet class names in index order.

    ``labels``: a text file (one name a line) or Keras's ``imagenet_class_index.json``; without
    it, Keras downloads its index file (online only).
    """
    if labels:
        path = Path(labels).expanduser()
        if not path.is_file():
            raise BackboneError(
                f"ImageNet labels file not found: {path}. Set backbone.imagenet_labels to a text file with "
                "one class name a line, or to Keras's imagenet_class_index.json."
            )
        if path.suffix == ".json":
            index = json.loads(path.read_text())
            return [index[str(i)][1] for i in range(len(index))]
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    import keras

    try:
        fpath = keras.utils.get_file(
            "imagenet_class_index.json",
            "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
            cache_subdir="models",
            file_hash="c2c37ea517e94d9795004a39431a14cb",
        )
    except Exception as exc:
        raise BackboneError(
            f"Could not download Keras's imagenet_class_index.json into {_keras_cache_dir()} ({exc}). "
            "Offline, pass --params backbone.imagenet_labels=/path/to/imagenet_labels.txt."
        ) from exc
    return imagenet_class_names(fpath)


def resolve_class(name_or_index: Any, class_names: list[str], param: str) -> int:
    """Index of a class given by name (case-insensitive, spaces or underscores) or index."""
    if isinstance(name_or_index, (int, np.integer)) or (isinstance(name_or_index, str) and name_or_index.strip().isdigit()):
        idx = int(name_or_index)
        if 0 <= idx < len(class_names):
            return idx
        raise BackboneError(f"{param}={idx} is out of range: the model has classes 0..{len(class_names) - 1}.")
    key = str(name_or_index).strip().lower().replace(" ", "_")
    lookup = {c.lower().replace(" ", "_"): i for i, c in enumerate(class_names)}
    if key in lookup:
        return lookup[key]
    near = difflib.get_close_matches(key, list(lookup), n=5, cutoff=0.6)
    near_txt = f" Near matches: {', '.join(near)}." if near else ""
    listing = "" if len(class_names) > 40 else f" Classes: {', '.join(class_names)}."
    raise BackboneError(f"Unknown class '{name_or_index}' in {param}.{near_txt}{listing}")
