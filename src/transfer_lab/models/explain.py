"""Why did the model say that? Saliency maps for any prediction, and two tests of their faithfulness.

Methods (all on the project's model contract: RGB 0-255 in, probabilities out):

- **Grad-CAM** (Selvaraju et al. 2017) on the backbone's last convolutional layer *inside* the
  classifier, or on any named layer (of the classifier or of its nested backbone);
- **Integrated Gradients** (Sundararajan et al. 2017) and **SmoothGrad** (Smilkov et al. 2017),
  gradients with respect to the 0-255 input;
- **gradcam_blurgrad** (the default, the map the explain pipeline saves): Grad-CAM times, per pixel,
  ``relu(gradient . (photo - blurred photo))``, the first-order drop of the class score when that
  pixel is replaced by a blurred copy. Plain 7x7 Grad-CAM is coarse: its top 20% is a blob that
  includes background, and it beat random deletion on only 0.70-0.74 of photos; the product keeps
  Grad-CAM's localisation and picks the pixels whose blurring costs the class most (0.93-0.98 on
  validation photos; Grad-CAM x |input gradient| reached 0.83-0.86). Both factors come from one
  backward pass.

Each explains the predicted class, or a chosen one, for a batch of photos, and returns float maps
of the model's input size (N, H, W), each normalised to [0, 1].

Grad-CAM on a transfer model with a nested backbone is a known failure: ``keras.Model(model.inputs,
[model.get_layer("backbone").get_layer(name).output, model.output])`` mixes two graphs and fails
with "Graph disconnected" (tensorflow#44462, tf-keras-vis#63/#71, keras-io#653).
:func:`explanation_model` re-wires instead: it applies the classifier's top-level layers in order
on a fresh input and, at the backbone, calls a sub-model of the backbone's *own* graph that returns
both the wanted layer's activations and the backbone's output, so one graph gives (activations,
logits, probabilities).

Gradients go through :mod:`transfer_lab.models.gradients` (TensorFlow, JAX or PyTorch, whichever
Keras backend runs); everything else is ``keras.ops`` and numpy. A gradient with respect to a
layer's activations is taken at a zero tensor the explanation model adds to them (a tap layer).

Faithfulness: :func:`deletion_test` (the most salient pixels replaced by a blurred copy of the
photo lower the class's probability more than as many random pixels) and :func:`sanity_check`
(Adebayo et al. 2018: maps of a copy whose head and top blocks have random weights should differ:
low rank correlation with the trained model's maps).

Callers elsewhere (evaluation's mistakes gallery, adversarial's figure) need only::

    maps = explain.explain(model, images).maps     # (N, H, W) float32 in [0, 1], the default method
    maps = explain.gradcam(model, images)          # plain Grad-CAM
    png = explain.overlay(image, maps[i])          # (h, w, 3) uint8, the photo under a heat map
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from transfer_lab.models.backbones import BACKBONES, BackboneError, backbone_of, last_conv_layer

METHODS = ("gradcam_blurgrad", "gradcam", "integrated_gradients", "smoothgrad")
#: The map saved by default: the one that passes the deletion test (see :meth:`Explainer.gradcam_blurgrad`).
DEFAULT_METHOD = "gradcam_blurgrad"
#: Methods built on a Grad-CAM layer (``layer`` applies to them).
LAYER_METHODS = ("gradcam", "gradcam_blurgrad")
_LAST = ("", "auto", "last_conv", "none")


class ExplainError(ValueError):
    """An explanation that cannot be made as asked; the message says what to change."""


# ------------------------------------------------------------------------------------------
# Gradients: through transfer_lab.models.gradients (any Keras backend). A gradient with respect
# to a layer's activations is the gradient with respect to a zero tensor added to them (a tap).


class _Tap:
    """Where :class:`_TapLayer` finds the tensor it adds (None: it adds nothing)."""

    delta: Any = None


def _tap_layer(slot: _Tap, name: str) -> Any:
    import keras

    class _TapLayer(keras.layers.Layer):
        """Identity, plus ``slot.delta`` while a gradient step sets it: d score / d delta at
        delta = 0 is d score / d activations, on every backend (JAX differentiates only with
        respect to function arguments)."""

        def call(self, x: Any) -> Any:
            return x if slot.delta is None else x + slot.delta

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return _TapLayer(name=name)


def _trace(fn: Callable[..., Any], height: int, width: int, variables: Sequence[Any] = ()) -> Callable[..., Any]:
    """``fn(images (N, H, W, 3) float32, classes (N,) int32)`` compiled once for every batch size
    (tf.function with a signature; jax.jit per batch shape)."""
    from transfer_lab.models.gradients import compiled

    return compiled(fn, variables=variables,
                    input_signature=[((None, height, width, 3), "float32"), ((None,), "int32")])


# ------------------------------------------------------------------------------------------
# One graph from the 0-255 input to (a layer's activations, logits, probabilities)


def _inner_backbone(model: Any) -> Any | None:
    try:
        inner = backbone_of(model)
    except BackboneError:
        return None
    return None if inner is model else inner


def resolve_layer(model: Any, layer: str | None = None, param: str = "explain.layer") -> str:
    """``None`` / ``last_conv`` -> the backbone's last convolutional layer; a name must exist in the
    model or its backbone and have a spatial (4-D) output."""
    import difflib

    inner = _inner_backbone(model)
    if layer is None or str(layer).strip().lower() in _LAST:
        return last_conv_layer(inner if inner is not None else model)
    name = str(layer).strip()
    candidates = [lyr for lyr in model.layers] + (list(inner.layers) if inner is not None else [])
    spatial = [lyr.name for lyr in candidates if _is_spatial(lyr)]
    if name not in spatial:
        known = [lyr.name for lyr in candidates]
        why = "has no spatial (4-D) output" if name in known else f"is not a layer of {model.name}"
        near = difflib.get_close_matches(name, spatial, n=5, cutoff=0.5)
        hint = f" Near matches: {', '.join(near)}." if near else ""
        raise ExplainError(f"{param}={name} {why}.{hint} Use last_conv (the backbone's last convolutional layer) "
                           f"or a convolutional layer's name, e.g. --params \"{param}=last_conv\".")
    return name


def _is_spatial(layer: Any) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def explanation_model(model: Any, layer: str | None = None, tap: _Tap | None = None) -> Any:
    """A model from ``model``'s 0-255 input to ``[activations of layer, logits, probabilities]``.

    ``model`` is a chain of top-level layers (input -> preprocess -> backbone -> pool -> head ->
    probabilities, as every model of :mod:`transfer_lab.models.backbones`); ``layer`` may be a layer
    of the chain or of its nested backbone. Without a ``logits`` layer the scores are the outputs.
    ``tap``: a slot whose ``delta`` (while set) is added to the activations, for their gradient.
    """
    import keras

    name = resolve_layer(model, layer)
    tap = tap if tap is not None else _Tap()
    tap_name = f"{name}_explain_tap"
    inner = _inner_backbone(model)
    top = {lyr.name for lyr in model.layers}
    inputs = keras.Input(model.input_shape[1:], name="image")
    x, acts, logits = inputs, None, None
    not_chain = ExplainError(f"{model.name} is not a chain of layers (input -> preprocess -> backbone -> head): "
                             "explanations need a model built by transfer_lab.models.backbones.")
    try:
        for lyr in model.layers[1:]:
            if lyr is inner and name not in top:
                # The backbone's own graph gives both tensors: no "Graph disconnected" (tensorflow#44462).
                # Its layers are reused (same weights), the tap called right after the wanted one.
                def call_function(layer: Any, *args: Any, **kwargs: Any) -> Any:
                    out = layer(*args, **kwargs)
                    return _tap_layer(tap, tap_name)(out) if layer.name == name else out

                tapped = keras.models.clone_model(inner, clone_function=lambda lyr: lyr, call_function=call_function)
                both = keras.Model(tapped.inputs, [tapped.get_layer(tap_name).output, tapped.outputs[0]])
                acts, x = both(x, training=False)
            elif isinstance(lyr, keras.Model):
                x = lyr(x, training=False)
            else:
                x = lyr(x)
            if lyr.name == name:
                x = _tap_layer(tap, tap_name)(x)
                acts = x
            if lyr.name == "logits":
                logits = x
    except (ValueError, TypeError) as exc:  # a layer that does not take the previous one's output
        raise not_chain from exc
    if acts is None:
        raise ExplainError(f"layer {name} was not reached in {model.name}")
    net = keras.Model(inputs, [acts, x if logits is None else logits, x], name=f"{model.name}_explain")
    # The re-wiring assumes a chain: check it computes what the model computes.
    probe = np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:])).astype("float32")
    want = keras.ops.convert_to_numpy(model(probe, training=False))
    got = keras.ops.convert_to_numpy(net(probe, training=False)[2])
    if want.shape != got.shape or not np.allclose(want, got, atol=1e-4):
        raise not_chain
    return net


# ------------------------------------------------------------------------------------------
# The explainer: traced functions, built once per (model, layer) and reused


def _normalise(maps: Any) -> Any:
    """Each map (N, H, W) shifted and scaled to [0, 1]; a constant map becomes zeros."""
    from keras import ops

    low = ops.min(maps, axis=(1, 2), keepdims=True)
    maps = maps - low
    high = ops.max(maps, axis=(1, 2), keepdims=True)
    return ops.where(high > 0, maps / ops.maximum(high, 1e-12), ops.zeros_like(maps))


class Explainer:
    """Saliency maps of one model: ``Explainer(model).gradcam(images)``. Use :func:`explainer` to get
    the cached one (its functions are traced on first use and reused for every batch size)."""

    def __init__(self, model: Any, layer: str | None = None):
        self.model = model
        self.layer = resolve_layer(model, layer)
        self.size = (int(model.input_shape[1]), int(model.input_shape[2]))
        self._tap = _Tap()
        self.net = explanation_model(model, self.layer, self._tap)
        self._acts_shape = tuple(int(d) for d in self.net.outputs[0].shape[1:])
        variables = self.net.variables
        self._cam = _trace(self._cam_step, *self.size, variables=variables)
        self._grad = _trace(self._input_step, *self.size, variables=variables)
        self._both = _trace(self._cam_and_input_step, *self.size, variables=variables)

    # traced steps ---------------------------------------------------------------------------
    def _scores(self, logits: Any, probs: Any, classes: Any) -> tuple[Any, Any]:
        from keras import ops

        chosen = ops.where(classes < 0, ops.cast(ops.argmax(probs, axis=-1), "int32"), classes)
        return ops.take_along_axis(logits, chosen[:, None], axis=1)[:, 0], chosen

    def _forward(self, x: Any, delta: Any, classes: Any) -> tuple[Any, Any]:
        """The explained class's logit, and (activations, probabilities, class), with ``delta``
        added to the activations."""
        self._tap.delta = delta
        try:
            acts, logits, probs = self.net(x, training=False)
        finally:
            self._tap.delta = None
        score, chosen = self._scores(logits, probs, classes)
        return score, (acts, probs, chosen)

    def _zeros(self, images: Any) -> Any:
        from keras import ops

        return ops.zeros((ops.shape(images)[0], *self._acts_shape), "float32")

    def _cam_maps(self, acts: Any, grads: Any) -> Any:
        from keras import ops

        weights = ops.mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
        cam = ops.relu(ops.sum(weights * acts, axis=-1, keepdims=True))
        cam = ops.image.resize(cam, self.size, interpolation="bilinear")[..., 0]
        return _normalise(cam)

    def _cam_step(self, images: Any, classes: Any) -> tuple[Any, Any, Any]:
        from transfer_lab.models.gradients import value_and_grad

        def forward(delta: Any, x: Any, classes: Any) -> tuple[Any, Any]:
            return self._forward(x, delta, classes)

        _, (acts, probs, chosen), grads = value_and_grad(forward)(self._zeros(images), images, classes)
        return self._cam_maps(acts, grads), probs, chosen

    def _cam_and_input_step(self, images: Any, classes: Any) -> tuple[Any, Any, Any, Any]:
        """Grad-CAM and the input gradient of the same score, from one backward pass."""
        from transfer_lab.models.gradients import value_and_grad

        def forward(xs: Any, classes: Any) -> tuple[Any, Any]:
            x, delta = xs
            return self._forward(x, delta, classes)

        _, (acts, probs, chosen), (input_grads, grads) = value_and_grad(forward)((images, self._zeros(images)), classes)
        return self._cam_maps(acts, grads), input_grads, probs, chosen

    def _input_step(self, images: Any, classes: Any) -> tuple[Any, Any, Any]:
        from transfer_lab.models.gradients import value_and_grad

        def forward(x: Any, classes: Any) -> tuple[Any, Any]:
            return self._forward(x, None, classes)

        _, (_, probs, chosen), grads = value_and_grad(forward)(images, classes)
        return grads, probs, chosen

    # numpy in, numpy out --------------------------------------------------------------------
    def _run(self, step: Callable[..., Any], images: np.ndarray, classes: np.ndarray, batch_size: int) -> list:
        from keras import ops

        from transfer_lab.models.gradients import backend

        # JAX compiles once per input shape: a short last batch is padded to the batch size.
        pad = backend() != "tensorflow" and len(images) > batch_size
        outs: list[list[np.ndarray]] = []
        for i in range(0, len(images), batch_size):
            x, c = images[i:i + batch_size], classes[i:i + batch_size]
            n = len(x)
            if pad and n < batch_size:
                x = np.concatenate([x, np.repeat(x[-1:], batch_size - n, axis=0)])
                c = np.concatenate([c, np.repeat(c[-1:], batch_size - n, axis=0)])
            res = step(x, c)
            outs.append([ops.convert_to_numpy(r)[:n] for r in res])
        return [np.concatenate(parts) for parts in zip(*outs)]

    def predict(self, images: Any, batch_size: int = 16) -> np.ndarray:
        """Class probabilities (N, classes) of ``images``."""
        return self._outputs(images, 2, batch_size)

    def logits(self, images: Any, batch_size: int = 16) -> np.ndarray:
        """Pre-softmax scores (N, classes) of ``images`` (the outputs when the model has no logits layer)."""
        return self._outputs(images, 1, batch_size)

    def _outputs(self, images: Any, which: int, batch_size: int) -> np.ndarray:
        from keras import ops

        x = fit_images(images, self.size)
        return np.concatenate([ops.convert_to_numpy(self.net(x[i:i + batch_size], training=False)[which])
                               for i in range(0, len(x), batch_size)])

    def gradcam(self, images: Any, classes: Any = None, batch_size: int = 16) -> "Explanation":
        x = fit_images(images, self.size)
        maps, probs, chosen = self._run(self._cam, x, _classes(classes, len(x)), batch_size)
        return Explanation(maps.astype(np.float32), chosen, probs[np.arange(len(x)), chosen], "gradcam", self.layer)

    def gradcam_blurgrad(self, images: Any, classes: Any = None, batch_size: int = 16,
                         blur_radius: float | Sequence[float] | None = None) -> "Explanation":
        """Grad-CAM x blur-gradient: Grad-CAM (where the evidence is) times, per pixel, the positive part
        of ``gradient . (image - blurred image)``, the first-order drop of the class score when that
        pixel is replaced by the blurred copy (what the deletion test does). One backward pass gives
        both factors. ``blur_radius`` (one or several, averaged): 1/28 of the side by default, as
        :func:`deletion_test`."""
        x = fit_images(images, self.size)
        cam, grads, probs, chosen = self._run(self._both, x, _classes(classes, len(x)), batch_size)
        radii = [blur_radius] if blur_radius is None or np.isscalar(blur_radius) else list(blur_radius)
        delta = np.mean([x - blur(x, r) for r in radii], axis=0)
        evidence = cam * np.maximum((grads * delta).sum(-1), 0.0)
        # Pixels without blur-gradient evidence (about half) are ordered by Grad-CAM, 1e-4 below
        # the evidence's scale, so any deletion share finds a ranking, not ties.
        maps = _to_numpy_maps(evidence + 1e-4 * evidence.max(axis=(1, 2), keepdims=True) * cam)
        return Explanation(maps, chosen, probs[np.arange(len(x)), chosen], "gradcam_blurgrad", self.layer)

    def input_gradients(self, images: Any, classes: Any = None, batch_size: int = 16) -> tuple[np.ndarray, ...]:
        """(d score / d input (N, H, W, 3), probabilities, classes) at the 0-255 input."""
        x = fit_images(images, self.size)
        return tuple(self._run(self._grad, x, _classes(classes, len(x)), batch_size))

    def integrated_gradients(self, images: Any, classes: Any = None, *, steps: int = 32, baseline: float = 0.0,
                             batch_size: int = 16, raw: bool = False) -> "Explanation | np.ndarray":
        """Integrated Gradients from a uniform ``baseline`` image (0 = black) in ``steps`` midpoint
        steps. ``raw=True`` gives the attributions (N, H, W, 3), whose sum is about
        score(image) - score(baseline) (completeness); otherwise maps of the positive evidence."""
        x = fit_images(images, self.size)
        probs = self.predict(x, batch_size)
        chosen = _classes(classes, len(x))
        chosen = np.where(chosen < 0, probs.argmax(-1), chosen).astype(np.int32)
        alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
        attributions = np.zeros_like(x)
        for i, image in enumerate(x):  # one photo's path in batches of batch_size
            path = baseline + alphas[:, None, None, None] * (image - baseline)[None]
            grads, _, _ = self._run(self._grad, path.astype(np.float32),
                                    np.full(steps, chosen[i], np.int32), batch_size)
            attributions[i] = (image - baseline) * grads.mean(0)
        if raw:
            return attributions
        maps = _to_numpy_maps(np.maximum(attributions.sum(-1), 0.0))
        return Explanation(maps, chosen, probs[np.arange(len(x)), chosen], "integrated_gradients", None)

    def smoothgrad(self, images: Any, classes: Any = None, *, steps: int = 32, noise: float = 0.15,
                   seed: int = 0, batch_size: int = 16) -> "Explanation":
        """SmoothGrad: mean absolute gradient over ``steps`` copies with Gaussian noise of
        ``noise`` x 255, summed over the colour channels."""
        x = fit_images(images, self.size)
        probs = self.predict(x, batch_size)
        chosen = _classes(classes, len(x))
        chosen = np.where(chosen < 0, probs.argmax(-1), chosen).astype(np.int32)
        rng = np.random.default_rng(seed)
        maps = np.zeros(x.shape[:3], np.float32)
        for i, image in enumerate(x):
            noisy = image[None] + rng.normal(0.0, noise * 255.0, (steps, *image.shape)).astype(np.float32)
            grads, _, _ = self._run(self._grad, noisy, np.full(steps, chosen[i], np.int32), batch_size)
            maps[i] = np.abs(grads).mean(0).sum(-1)
        return Explanation(_to_numpy_maps(maps), chosen, probs[np.arange(len(x)), chosen], "smoothgrad", None)

    def explain(self, images: Any, method: str = DEFAULT_METHOD, classes: Any = None, *, steps: int = 32,
                batch_size: int = 16, seed: int = 0) -> "Explanation":
        if method == "gradcam":
            return self.gradcam(images, classes, batch_size)
        if method == "gradcam_blurgrad":
            return self.gradcam_blurgrad(images, classes, batch_size)
        if method == "integrated_gradients":
            return self.integrated_gradients(images, classes, steps=steps, batch_size=batch_size)
        if method == "smoothgrad":
            return self.smoothgrad(images, classes, steps=steps, seed=seed, batch_size=batch_size)
        raise ExplainError(f"explain.method={method}: use one of {', '.join(METHODS)}.")


@dataclass
class Explanation:
    """Maps (N, H, W) in [0, 1], the explained class of each photo and its probability."""

    maps: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    method: str
    layer: str | None


def _classes(classes: Any, n: int) -> np.ndarray:
    """None -> -1 (the predicted class) for every photo; one int for all; or one per photo."""
    if classes is None:
        return np.full(n, -1, np.int32)
    arr = np.asarray(classes, dtype=np.int64).reshape(-1)
    if arr.size == 1:
        arr = np.full(n, int(arr[0]))
    if arr.size != n:
        raise ExplainError(f"{arr.size} classes for {n} images: give one class, or one per image.")
    return arr.astype(np.int32)


def _to_numpy_maps(maps: np.ndarray) -> np.ndarray:
    maps = maps - maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return np.where(high > 0, maps / np.maximum(high, 1e-12), 0.0).astype(np.float32)


def fit_images(images: Any, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) or (N, H, W, 3) RGB 0-255 -> float32 batch at ``size`` (resized as training does)."""
    from PIL import Image

    from transfer_lab.data.imaging import resize_rgb

    arr = np.asarray(images)
    batch = arr[None] if arr.ndim == 3 else arr
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ExplainError(f"expected an RGB image (H, W, 3) or a batch (N, H, W, 3) in 0-255, got shape {arr.shape}")
    if tuple(batch.shape[1:3]) != tuple(size):
        batch = np.stack([np.asarray(resize_rgb(Image.fromarray(np.clip(np.rint(b), 0, 255).astype(np.uint8)), size))
                          for b in batch])
    return batch.astype(np.float32)


_CACHE: dict[tuple[int, str | None], Explainer] = {}


def explainer(model: Any, layer: str | None = None) -> Explainer:
    """The :class:`Explainer` of ``model`` and ``layer``, built (and traced) once and reused."""
    key = (id(model), None if layer is None or str(layer).strip().lower() in _LAST else str(layer))
    cached = _CACHE.get(key)
    if cached is None or cached.model is not model:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        cached = _CACHE[key] = Explainer(model, layer)
    return cached


def explain(model: Any, images: Any, method: str = DEFAULT_METHOD, *, layer: str | None = None, classes: Any = None,
            steps: int = 32, batch_size: int = 16, seed: int = 0) -> Explanation:
    """Maps of ``images`` (RGB 0-255, any size: resized to the model's input) for the predicted class
    (``classes=None``) or chosen ones, by ``method`` (gradcam | integrated_gradients | smoothgrad)."""
    if method not in METHODS:
        raise ExplainError(f"explain.method={method}: use one of {', '.join(METHODS)}.")
    ex = explainer(model, layer if method in LAYER_METHODS else None)
    return ex.explain(images, method, classes, steps=steps, batch_size=batch_size, seed=seed)


def gradcam(model: Any, images: Any, *, layer: str | None = None, classes: Any = None,
            batch_size: int = 16) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of ``images`` (a single (H, W, 3) image gives (H, W))."""
    maps = explainer(model, layer).gradcam(images, classes, batch_size).maps
    return maps[0] if np.asarray(images).ndim == 3 else maps


# ------------------------------------------------------------------------------------------
# Pictures


def for_display(saliency: Any) -> np.ndarray:
    """A map made readable for the eye: Gaussian-smoothed (sigma 1/56 of the side) and scaled to
    its 99th percentile. Pixel-level maps (gradcam_blurgrad) are a few bright pixels otherwise;
    the saved .npy stays the raw map."""
    from scipy.ndimage import gaussian_filter

    sal = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float32)), 0.0, None)
    sal = gaussian_filter(sal, max(sal.shape) / 56.0)
    top = float(np.percentile(sal, 99)) if sal.size else 0.0
    return np.clip(sal / top, 0.0, 1.0) if top > 0 else np.zeros_like(sal)


def overlay(image: Any, saliency: Any, *, alpha: float = 0.45, cmap: str = "jet", display: bool = True) -> np.ndarray:
    """The photo (H, W, 3, 0-255) under a heat map of ``saliency`` (any size, [0, 1]): a uint8
    (H, W, 3) array of the photo's own size, ready for a PNG. ``display`` shows the map through
    :func:`for_display` (smoothed, scaled to its 99th percentile); False shows it as it is."""
    import matplotlib
    from PIL import Image

    photo = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
    sal = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float32)), 0.0, 1.0)
    if display:
        sal = for_display(sal)
    if sal.shape != photo.shape[:2]:
        sal = np.asarray(Image.fromarray(sal, mode="F").resize((photo.shape[1], photo.shape[0]), Image.BILINEAR))
    heat = matplotlib.colormaps[cmap](np.clip(sal, 0, 1))[..., :3] * 255.0
    out = (1.0 - alpha) * photo.astype(np.float32) + alpha * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blur(images: Any, radius: float | None = None) -> np.ndarray:
    """A Gaussian-blurred copy of each image (N, H, W, 3), radius 1/28 of the side by default."""
    from PIL import Image, ImageFilter

    x = np.asarray(images, dtype=np.float32)
    r = float(radius) if radius is not None else max(x.shape[1:3]) / 28.0
    return np.stack([np.asarray(Image.fromarray(np.clip(np.rint(i), 0, 255).astype(np.uint8))
                                .filter(ImageFilter.GaussianBlur(r)), dtype=np.float32) for i in x])


# ------------------------------------------------------------------------------------------
# Faithfulness


def deletion_test(model: Any, images: Any, maps: Any, *, classes: Any = None, fraction: float = 0.2,
                  seed: int = 0, blur_radius: float | None = None, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Replace the ``fraction`` most salient pixels of each photo by a blurred copy of it, and as many
    random pixels: how much does the class's log-odds (its logit minus the log-sum-exp of the other
    logits, log p / (1 - p)) drop each way? Log-odds, not the probability: a confident model's
    probabilities sit at 1.0 in float32 whatever is deleted, its log-odds still move.

    Returns per photo ``probability`` (untouched), ``salient_drop``, ``random_drop`` (in log-odds)
    and ``beats`` (salient deletion lowers the class's log-odds more than random deletion).
    """
    ex = explainer(model)
    x = fit_images(images, ex.size)
    m = np.asarray(maps, dtype=np.float32).reshape(len(x), -1)
    if m.shape[1] != ex.size[0] * ex.size[1]:
        raise ExplainError(f"maps of shape {np.shape(maps)} do not fit the model's input {ex.size}")
    z0 = ex.logits(x, batch_size)
    chosen = _classes(classes, len(x))
    chosen = np.where(chosen < 0, z0.argmax(-1), chosen)
    k = max(1, int(round(fraction * m.shape[1])))
    rng = np.random.default_rng(seed)
    salient = np.zeros_like(m, dtype=bool)
    random = np.zeros_like(m, dtype=bool)
    for i in range(len(x)):
        salient[i, np.argsort(-m[i], kind="stable")[:k]] = True
        random[i, rng.choice(m.shape[1], k, replace=False)] = True
    soft = blur(x, blur_radius)
    shape = (len(x), *ex.size, 1)
    z_sal = ex.logits(np.where(salient.reshape(shape), soft, x), batch_size)
    z_rnd = ex.logits(np.where(random.reshape(shape), soft, x), batch_size)
    o0, o_sal, o_rnd = (log_odds(z, chosen) for z in (z0, z_sal, z_rnd))
    sal_drop, rnd_drop = o0 - o_sal, o0 - o_rnd
    p0 = 1.0 / (1.0 + np.exp(-o0))
    return {"probability": p0, "salient_drop": sal_drop, "random_drop": rnd_drop, "beats": sal_drop > rnd_drop}


def log_odds(logits: Any, classes: Any) -> np.ndarray:
    """log p_c / (1 - p_c) of each row's class c, from the logits (no rounding of p to 1.0). Rows that
    are already probabilities (a model without a ``logits`` layer) are taken as such (their log)."""
    from transfer_lab.models.predict import is_probabilities

    z = np.asarray(logits, dtype=np.float64)
    if is_probabilities(z, axis=1, atol=1e-4):
        z = np.log(np.clip(z, 1e-12, None))
    rows = np.arange(len(z))
    others = z.copy()
    others[rows, classes] = -np.inf
    top = others.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
    return z[rows, classes] - lse


def _block_pattern(backbone: Any) -> re.Pattern | None:
    """The registry's block pattern that names most of ``backbone``'s layers (None: none fits)."""
    names = [lyr.name for lyr in backbone.layers]
    best, hits = None, 0
    for spec in BACKBONES.values():
        pattern = re.compile(spec.block_pattern)
        n = sum(bool(pattern.match(name)) for name in names)
        if n > hits:
            best, hits = pattern, n
    return best if hits >= len(names) // 2 else None


def randomized_copy(model: Any, *, blocks: int = 2, seed: int = 0) -> tuple[Any, list[str]]:
    """A copy of ``model`` whose head and top ``blocks`` backbone blocks have random weights (each
    kernel and bias drawn from a normal of the trained one's spread; BatchNorm kept), and the names
    of the layers randomised (Adebayo et al. 2018, cascading randomisation from the top)."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    inner = _inner_backbone(copy)
    chosen: list[Any] = []
    if inner is not None:
        after = False
        for lyr in copy.layers:  # the head: weighted layers after the backbone
            if lyr is inner:
                after = True
            elif after and lyr.weights:
                chosen.append(lyr)
        pattern = _block_pattern(inner)
        groups: list[tuple[str, list[Any]]] = []
        for lyr in inner.layers:
            if lyr.__class__.__name__ == "InputLayer":
                continue
            match = pattern.match(lyr.name) if pattern else None
            key = match.group(1) if match else (groups[-1][0] if groups else lyr.name)
            if not groups or groups[-1][0] != key:
                groups.append((key, [lyr]))
            else:
                groups[-1][1].append(lyr)
        weighted = [g for g in groups if any(_randomisable(lyr) for lyr in g[1])]
        for _, layers in weighted[len(weighted) - blocks:] if blocks > 0 else []:
            chosen.extend(layers)
    else:
        chosen = [lyr for lyr in copy.layers if lyr.weights][-max(1, blocks + 1):]
    rng = np.random.default_rng(seed)
    names = []
    for lyr in chosen:
        if not _randomisable(lyr):
            continue
        for var in lyr.weights:
            if "moving" in var.path or "gamma" in var.path or "beta" in var.path:
                continue
            value = keras.ops.convert_to_numpy(var)
            spread = float(value.std()) or 0.05
            var.assign(rng.normal(0.0, spread, value.shape).astype(value.dtype))
        names.append(lyr.name)
    return copy, names


def _randomisable(layer: Any) -> bool:
    return any(hasattr(layer, attr) for attr in ("kernel", "depthwise_kernel")) and bool(layer.weights)


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two maps (ties get average ranks). A constant map orders no
    pixel: against a map that does, the correlation is 0; two constant maps give nan."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan") if ra.std() == rb.std() else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def sanity_check(model: Any, images: Any, maps: Any, *, method: str = DEFAULT_METHOD, layer: str | None = None,
                 classes: Any = None, blocks: int = 2, steps: int = 32, seed: int = 0,
                 batch_size: int = 16) -> dict[str, Any]:
    """Rank correlation of each photo's map with the map, for the same class, of a copy of the
    model with randomised head and top ``blocks`` blocks: a faithful method gives low values."""
    ex = explainer(model)
    x = fit_images(images, ex.size)
    chosen = _classes(classes, len(x))
    chosen = np.where(chosen < 0, ex.predict(x, batch_size).argmax(-1), chosen)
    random_model, names = randomized_copy(model, blocks=blocks, seed=seed)
    other = Explainer(random_model, layer if method in LAYER_METHODS else None).explain(
        x, method, chosen, steps=steps, batch_size=batch_size, seed=seed).maps
    rho = np.array([spearman(a, b) for a, b in zip(np.asarray(maps), other)])
    return {"correlations": rho, "randomized_layers": names, "random_maps": other}


def faithfulness_summary(deletion: dict[str, np.ndarray], sanity: dict[str, Any] | None) -> dict[str, Any]:
    """The figures explanations.json reports."""
    out: dict[str, Any] = {
        "n_photos": int(len(deletion["beats"])),
        "deletion": {
            "beats_random_share": float(np.mean(deletion["beats"])) if len(deletion["beats"]) else float("nan"),
            "salient_drop_mean": float(np.mean(deletion["salient_drop"])),
            "random_drop_mean": float(np.mean(deletion["random_drop"])),
            "unit": "log-odds of the explained class",
        },
    }
    if sanity is not None:
        rho = np.asarray(sanity["correlations"], dtype=np.float64)
        ok = rho[np.isfinite(rho)]
        out["sanity"] = {
            "rank_correlation_mean": float(ok.mean()) if ok.size else float("nan"),
            "rank_correlation_median": float(np.median(ok)) if ok.size else float("nan"),
            "n_constant_maps": int((~np.isfinite(rho)).sum()),
            "randomized_layers": len(sanity["randomized_layers"]),
        }
    return out

