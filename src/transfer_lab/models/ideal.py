""""Ideal" class images: gradient ascent on one class's pre-softmax score, made of small pieces.

An image is optimised so that a model's ``logits`` for one class grow, while staying a valid
0-255 RGB picture that people can read. The pieces compose:

- **Parameterisation** (how the image is stored as variables): ``pixel`` (one variable per pixel
  and channel) or ``fourier`` (the image's 2-D spectrum, scaled by 1/frequency so that low
  frequencies move first), optionally with **decorrelated colour** (the variables live in a
  de-correlated colour space, mixed back into RGB by a fixed 3x3 matrix). Either way the last step
  is a sigmoid times 255, so the image is *always* inside 0-255 without clipping.
- **Objective** (:func:`class_score`): the class's logit, or the logit minus the mean logit.
- **Regularisers** (penalties added to the loss): :func:`total_variation` and :func:`l2`; and a
  :func:`gaussian_blur` of the image every few steps.
- **Transformation robustness** (random changes to the image before the model sees it, a new draw
  for each image and each step): :func:`jitter` (shift), :func:`scale`, :func:`rotate`; with
  ``batch`` > 1 each step scores an ensemble of differently transformed copies.
- **Diversity**: several images of a class optimised together, the cosine similarity of their Gram
  matrices at a middle layer penalised (:func:`gram_similarity`, as in Lucid).
- **Octaves**: optimise a smaller image first, then enlarge it and go on (coarse to fine).

The defaults of the visualization parameters (Fourier + decorrelated colour, logit minus mean,
3 copies per step with jitter 24 px, zoom 0.6-1.4 and rotation 25 degrees, TV 1.5, a 0.5 px
blur every 4 steps, 128 steps) were chosen on goldfish, monarch, lemon and golden_retriever for a
second network (MobileNet 0.25) to see the class too; the previous defaults (one copy, jitter 8,
zoom 0.9-1.1, rotation 10, raw logit) reached p = 1.00 but ranks 17-108 under it.
``bench/visualization.py`` compares the two.

Ideas from Olah et al., "Feature Visualization" (Distill, 2017) and Lucid; the code is our own.

Main entries: :func:`generate_set` (a class's images), :func:`generate` (one image),
:func:`generate_channels` (channel objectives), all with an :class:`IdealConfig`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from transfer_lab.models.predict import as_probabilities, softmax

# Square root of the colour correlation of ImageNet photos (from an SVD of the pixel covariance);
# columns are the de-correlated directions: brightness, red-blue, green-magenta.
_COLOUR_SQRT = np.array(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]], dtype=np.float32,
)
_COLOUR = _COLOUR_SQRT / np.max(np.linalg.norm(_COLOUR_SQRT, axis=0))
_EPS = 1e-3  # keeps logit(x / 255) finite when an image is turned back into variables


class IdealError(ValueError):
    """A bad setting for ideal-image generation; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# Measures and regularisers (on float tensors of 0-255 images, shape (N, H, W, C))
# ---------------------------------------------------------------------------------------------

def _batch(images: Any) -> Any:
    from keras import ops

    x = ops.convert_to_tensor(images, dtype="float32")
    return x[None] if len(x.shape) == 3 else x


def total_variation(images: Any) -> Any:
    """Mean total variation per pixel of each image, in 0-255 units: the mean absolute difference
    to the pixel below plus the mean absolute difference to the pixel on the right (over all
    channels). A constant image gives 0; a 0/255 checkerboard gives 510. Shape (N,)."""
    from keras import ops

    x = _batch(images)
    dy = ops.mean(ops.abs(x[:, 1:, :, :] - x[:, :-1, :, :]), axis=(1, 2, 3))
    dx = ops.mean(ops.abs(x[:, :, 1:, :] - x[:, :, :-1, :]), axis=(1, 2, 3))
    return dy + dx


def l2(images: Any) -> Any:
    """Mean squared distance of each image from mid-grey, in units of the full range (0..0.25).
    Shape (N,)."""
    from keras import ops

    return ops.mean(ops.square(_batch(images) / 255.0 - 0.5), axis=(1, 2, 3))


def tv_per_pixel(image: np.ndarray) -> float:
    """:func:`total_variation` of one image in NumPy (what the report states)."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    return float(np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean())


REGULARIZERS: dict[str, Callable[[Any], Any]] = {"total_variation": total_variation, "l2": l2}


# ---------------------------------------------------------------------------------------------
# Transformations (random, differentiable; same output size as input)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transform:
    """A random, differentiable change of a batch of images, a new draw per image. ``draw(n, rng)``
    gives the per-image parameters in NumPy (outside any compiled function, so every backend sees
    the same draws); ``apply(x, params)`` is written in ``keras.ops``. ``t(x, rng)`` does both."""

    name: str
    draw: Callable[[int, np.random.Generator], np.ndarray]
    apply: Callable[[Any, Any], Any]

    def __call__(self, x: Any, rng: np.random.Generator) -> Any:
        from keras import ops

        x = ops.convert_to_tensor(x, dtype="float32")
        return self.apply(x, self.draw(int(x.shape[0]), rng))


def _project(x: Any, matrix: Any) -> Any:
    """Resample each image of ``x`` at its own projective ``matrix`` (N, 8), bilinear, reflected."""
    from keras import ops

    return ops.image.affine_transform(x, ops.cast(matrix, "float32"), interpolation="bilinear",
                                      fill_mode="reflect", fill_value=0.0)


def jitter(pixels: int) -> Transform:
    """Shift each image by its own random whole number of pixels in -pixels..pixels (edges
    reflected; a whole-pixel shift resamples nothing)."""

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        if pixels <= 0:
            return np.zeros((n, 2), np.float32)
        return rng.integers(-pixels, pixels + 1, size=(n, 2)).astype(np.float32)

    def apply(x: Any, shift: Any) -> Any:
        from keras import ops

        if pixels <= 0:
            return x
        shift = ops.convert_to_tensor(shift, "float32")
        one, zero = ops.ones_like(shift[:, 0]), ops.zeros_like(shift[:, 0])
        return _project(x, ops.stack([one, zero, shift[:, 0], zero, one, shift[:, 1], zero, zero], axis=1))

    return Transform(f"jitter({pixels})", draw, apply)


def _affine(x: Any, scale: Any, angle: Any) -> Any:
    """Zoom by ``scale`` and rotate by ``angle`` (radians; one per image) about the centre,
    bilinear, reflected."""
    from keras import ops

    h, w = int(x.shape[1]), int(x.shape[2])
    scale, angle = ops.convert_to_tensor(scale, "float32"), ops.convert_to_tensor(angle, "float32")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # output (x', y') samples input at inverse-transformed coordinates
    c, s = ops.cos(angle) / scale, ops.sin(angle) / scale
    a0, a1 = c, -s
    b0, b1 = s, c
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zero = ops.zeros_like(c)
    return _project(x, ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1))


def scale(low: float, high: float) -> Transform:
    """Zoom each image by its own random factor in [low, high] about the centre."""

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low, high, size=n).astype(np.float32)

    def apply(x: Any, factor: Any) -> Any:
        from keras import ops

        if low == high == 1.0:
            return x
        factor = ops.convert_to_tensor(factor, "float32")
        return _affine(x, factor, ops.zeros_like(factor))

    return Transform(f"scale({low}, {high})", draw, apply)


def rotate(degrees: float) -> Transform:
    """Rotate each image by its own random angle in -degrees..degrees about the centre."""

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.uniform(-degrees, degrees, size=n) * (math.pi / 180.0)).astype(np.float32)

    def apply(x: Any, angle: Any) -> Any:
        from keras import ops

        if degrees <= 0:
            return x
        angle = ops.convert_to_tensor(angle, "float32")
        return _affine(x, ops.ones_like(angle), angle)

    return Transform(f"rotate({degrees})", draw, apply)


def gaussian_blur(images: Any, sigma: float) -> Any:
    """Each image blurred by a separable Gaussian of ``sigma`` pixels (edges reflected)."""
    from keras import ops

    x = _batch(images)
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    c = int(x.shape[-1])
    pad = ops.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="reflect")
    ky = ops.convert_to_tensor(np.tile(k[:, None, None, None], (1, 1, c, 1)))
    kx = ops.convert_to_tensor(np.tile(k[None, :, None, None], (1, 1, c, 1)))
    y = ops.depthwise_conv(pad, ky, strides=1, padding="valid")
    return ops.depthwise_conv(y, kx, strides=1, padding="valid")


# ---------------------------------------------------------------------------------------------
# Objectives and the diversity term
# ---------------------------------------------------------------------------------------------

def class_score(logits: Any, targets: Sequence[int], objective: str = "logit") -> Any:
    """Per-image score of the target class (a group: the log-sum-exp of its logits).
    ``logit``: the raw score; ``logit_minus_mean``: minus the mean logit of all classes, so that the
    image cannot win by raising every class at once (the softmax ignores a common shift). Shape (N,)."""
    from keras import ops

    if objective not in OBJECTIVES:
        raise IdealError(f"objective {objective!r} is not known: use {' or '.join(OBJECTIVES)}.")
    logits = ops.convert_to_tensor(logits, "float32")
    picked = ops.take(logits, np.asarray(list(targets), np.int32), axis=1)
    score = ops.logsumexp(picked, axis=1) if len(targets) > 1 else picked[:, 0]
    if objective == "logit_minus_mean":
        score = score - ops.mean(logits, axis=1)
    return score


OBJECTIVES = ("logit", "logit_minus_mean")


def gram_similarity(features: Any) -> Any:
    """Mean cosine similarity between the Gram matrices (channel x channel, over positions) of
    every pair of images in ``features`` (N, H, W, C): 1 when all images have the same texture
    statistics, near 0 when they share none. The diversity penalty of Lucid. 0 for N = 1."""
    from keras import ops

    f = ops.convert_to_tensor(features, "float32")
    n = f.shape[0]
    if n is None or n < 2:
        return ops.convert_to_tensor(0.0)
    flat = ops.reshape(f, (n, -1, f.shape[-1]))
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat) / float(flat.shape[1])
    g = ops.reshape(gram, (n, -1))
    g = g / ops.maximum(ops.sqrt(ops.sum(ops.square(g), axis=1, keepdims=True)), 1e-12)
    sim = ops.matmul(g, ops.transpose(g))
    return (ops.sum(sim) - ops.trace(sim)) / float(n * (n - 1))


# ---------------------------------------------------------------------------------------------
# Parameterisations: variables <-> 0-255 image
# ---------------------------------------------------------------------------------------------

def _freq_scale(h: int, w: int, decay: float = 1.0) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay).astype(np.float32)


def _irfft2_bases(h: int, w: int) -> tuple[np.ndarray, ...]:
    """Real matrices that compute NumPy's ``irfft2`` (axes H, W) of a (H, W // 2 + 1) spectrum
    A + iB as ``(Ch A - Sh B) Cw - (Ch B + Sh A) Sw``: an inverse DFT along H, then the real
    inverse along W (the DC and Nyquist columns counted once, the others twice: their conjugate
    halves). Matrix products, so every Keras backend differentiates them the same way."""
    k = np.arange(h)
    ang = 2 * np.pi * np.outer(k, k) / h
    ch, sh = np.cos(ang) / h, np.sin(ang) / h  # (H out, H freq)
    wr = w // 2 + 1
    weight = np.full(wr, 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    ang = 2 * np.pi * np.outer(np.arange(wr), np.arange(w)) / w
    cw, sw = weight[:, None] * np.cos(ang) / w, weight[:, None] * np.sin(ang) / w  # (W freq, W out)
    return tuple(m.astype(np.float32) for m in (ch, sh, cw, sw))


class Parameterization:
    """Variables that map to n (n, H, W, 3) images in 0-255 through a sigmoid.

    ``fourier``: the variables are the real and imaginary parts of the image's spectrum, each
    frequency scaled by 1/f. ``decorrelate``: the three channels are mixed into RGB by the
    ImageNet colour-correlation square root. Both only change the *geometry* of the optimisation
    (which directions are cheap), not which images can be reached. The mapping is in
    ``keras.ops`` (:meth:`image_of` a value, for a compiled step); turning an image back into
    variables (:meth:`assign_image`) is NumPy.
    """

    def __init__(self, size: tuple[int, int], *, fourier: bool = True, decorrelate: bool = True,
                 init_std: float = 0.01, seed: int = 0, n: int = 1):
        import keras

        self.size = (int(size[0]), int(size[1]))
        self.fourier = bool(fourier)
        self.decorrelate = bool(decorrelate)
        self.n = int(n)
        h, w = self.size
        rng = np.random.default_rng(seed)
        if self.fourier:
            self._scale = _freq_scale(h, w)
            self._bases = _irfft2_bases(h, w)
            shape = (2, self.n, 3, h, w // 2 + 1)
        else:
            shape = (self.n, h, w, 3)
        self.variable = keras.Variable(rng.normal(0.0, init_std, size=shape).astype(np.float32), name="ideal_image",
                                       trainable=False)

    def image(self) -> Any:
        """The current images, float32 (n, H, W, 3) in 0-255."""
        return self.image_of(self.variable.value)

    def image_of(self, value: Any) -> Any:
        """The images that the variables' ``value`` stands for (differentiable in ``value``)."""
        from keras import ops

        h, w = self.size
        if self.fourier:
            ch, sh, cw, sw = self._bases
            re, im = value[0] * self._scale, value[1] * self._scale  # (n, 3, H, W//2+1)
            t_re = ops.einsum("mk,nckl->ncml", ch, re) - ops.einsum("mk,nckl->ncml", sh, im)
            t_im = ops.einsum("mk,nckl->ncml", ch, im) + ops.einsum("mk,nckl->ncml", sh, re)
            t = ops.einsum("ncml,lj->ncmj", t_re, cw) - ops.einsum("ncml,lj->ncmj", t_im, sw)  # (n, 3, H, W)
            t = ops.transpose(t, (0, 2, 3, 1)) * (math.sqrt(h * w) / 4.0)
        else:
            t = value
        if self.decorrelate:
            t = ops.tensordot(t, _COLOUR.T, axes=1)
        return ops.sigmoid(t) * 255.0

    def assign_image(self, image: np.ndarray) -> None:
        """Set the variables so that :meth:`image` gives ``image`` (one (H, W, 3) image for all n,
        or n images; resized to this size)."""
        self.variable.assign(self.value_of(image))

    def value_of(self, image: Any) -> np.ndarray:
        """The variables' value that gives ``image`` (NumPy)."""
        from keras import ops

        h, w = self.size
        x = np.asarray(ops.convert_to_numpy(image), np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape[0] != self.n:
            x = np.repeat(x[:1], self.n, axis=0)
        if tuple(x.shape[1:3]) != (h, w):
            x = np.asarray(ops.convert_to_numpy(ops.image.resize(x, (h, w), interpolation="bicubic")), np.float32)
        p = np.clip(x.astype(np.float64) / 255.0, _EPS, 1.0 - _EPS)
        t = np.log(p) - np.log1p(-p)
        if self.decorrelate:
            t = np.tensordot(t, np.linalg.inv(_COLOUR.T.astype(np.float64)), axes=1)
        if self.fourier:
            t = np.transpose(t, (0, 3, 1, 2)) / (math.sqrt(h * w) / 4.0)
            spectrum = np.fft.rfft2(t) / self._scale
            value = np.stack([spectrum.real, spectrum.imag])
        else:
            value = t
        return value.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Configuration and the optimisation loop
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IdealConfig:
    """Everything that shapes one class's ideal images; built from the ``visualization``
    parameters by :meth:`transfer_lab.params.visualization.VisualizationParams.ideal_config`."""

    steps: int = 192
    learning_rate: float = 0.05
    seed: int = 42
    parameterization: str = "fourier"  # fourier | pixel
    decorrelate_colour: bool = True
    regularizers: Mapping[str, float] = field(default_factory=lambda: {"total_variation": 1.5, "l2": 0.0})
    jitter: int = 8
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: float = 10.0
    octaves: int = 1
    octave_scale: float = 1.4
    batch: int = 1  # randomly transformed copies of each image per step (their scores averaged)
    objective: str = "logit"  # logit | logit_minus_mean
    blur_every: int = 0  # blur the images every this many steps (0 = never) ...
    blur_sigma: float = 0.5  # ... by a Gaussian of this many pixels
    n_images: int = 1  # images optimised together for the class
    diversity: float = 0.0  # weight of the Gram-matrix similarity between them (needs features)

    def without_smoothness(self) -> "IdealConfig":
        """The same run with the smoothness terms (total variation, L2, blur) switched off."""
        return replace(self, regularizers={k: 0.0 for k in self.regularizers}, blur_every=0)

    def transforms(self) -> list[Transform]:
        out: list[Transform] = []
        if self.jitter:
            out.append(jitter(self.jitter))
        if self.scale != (1.0, 1.0):
            out.append(scale(*self.scale))
        if self.rotate:
            out.append(rotate(self.rotate))
        if self.jitter:  # a second, smaller shift after the resampling, as in Lucid
            out.append(jitter(max(1, self.jitter // 2)))
        return out


@dataclass
class IdealResult:
    image: np.ndarray  # uint8 (H, W, 3)
    logit: float  # final target logit of the saved (whole-pixel) image (a group: log-sum-exp)
    probability: float  # of the saved image under the model (a group: summed)
    tv_per_pixel: float
    seconds: float  # the class's optimisation time divided by the images made together
    history: dict[str, list[float]]


def model_input_size(model: Any) -> tuple[int, int]:
    shape = model.input_shape
    if shape[1] is None or shape[2] is None:
        raise IdealError(f"model {model.name!r} has no fixed input size; build it with an image_size.")
    return int(shape[1]), int(shape[2])


def features_and_logits(model: Any, layer: str) -> Any:
    """A model from 0-255 images to ``[activations of layer, logits]`` (for the diversity term);
    ``model`` is a project classifier (with a ``logits`` layer)."""
    from transfer_lab.models.featuremaps import activation_model

    return activation_model(model, [layer, "logits"])


def generate(
    logits_model: Any,
    class_index: int | Sequence[int],
    config: IdealConfig = IdealConfig(),
    *,
    progress: bool = True,
    description: str | None = None,
    log_every: int = 8,
) -> IdealResult:
    """One ideal image (the first of :func:`generate_set` with ``n_images=1``)."""
    return generate_set(logits_model, class_index, replace(config, n_images=1, diversity=0.0), progress=progress,
                        description=description, log_every=log_every)[0]


def generate_set(
    logits_model: Any,
    class_index: int | Sequence[int],
    config: IdealConfig = IdealConfig(),
    *,
    features_model: Any = None,
    progress: bool = True,
    description: str | None = None,
    log_every: int = 8,
) -> list[IdealResult]:
    """``config.n_images`` images that ``logits_model`` (0-255 RGB in, pre-softmax scores out)
    scores high for ``class_index`` (one class, or a group such as every cat breed).

    Loss = -mean score (:func:`class_score` with ``config.objective``, over ``config.batch``
    randomly transformed copies of each image) + sum of weight * regulariser(image)
    + ``config.diversity`` * :func:`gram_similarity` of ``features_model``'s first output (a model
    giving ``[features, logits]``, see :func:`features_and_logits`; needed only when diversity > 0
    and n_images > 1). Every ``config.blur_every`` steps the images are blurred a little. Each
    octave runs its share of ``config.steps`` with Adam.
    """
    from keras import ops

    h, w = model_input_size(logits_model)
    n_classes = int(logits_model.output_shape[-1])
    targets = sorted({int(i) for i in (class_index if isinstance(class_index, (list, tuple, np.ndarray)) else [class_index])})
    if not targets or not all(0 <= i < n_classes for i in targets):
        raise IdealError(f"class index {class_index} is out of range for a model with {n_classes} classes.")
    if config.objective not in OBJECTIVES:
        raise IdealError(f"objective {config.objective!r} is not known: use {' or '.join(OBJECTIVES)}.")
    n = int(config.n_images)
    diverse = n > 1 and config.diversity > 0
    if diverse and features_model is None:
        raise IdealError("a diversity weight above 0 needs features_model (ideal.features_and_logits(model, layer)); "
                         "or set the diversity to 0.")
    copies = max(1, int(config.batch))

    def objective(out: Any) -> tuple[Any, Any]:
        if diverse:
            feats, logits = out
            f = ops.mean(ops.reshape(feats, (copies, n, *feats.shape[1:])), axis=0)
            similarity = gram_similarity(f)
        else:
            logits, similarity = out, ops.convert_to_tensor(0.0)
        return ops.mean(class_score(logits, targets, config.objective)), similarity

    final, seconds, history = optimise(features_model if diverse else logits_model, objective, config, n=n,
                                       progress=progress, description=description or f"ideal image (class {class_index})",
                                       log_every=log_every)
    all_logits = ops.convert_to_numpy(logits_model(final.astype(np.float32), training=False)).astype(np.float64)
    results = []
    for k in range(n):
        logits = all_logits[k]
        probs = softmax(logits)
        top = logits[targets].max()
        logit = float(top + np.log(np.exp(logits[targets] - top).sum()))
        results.append(IdealResult(final[k], logit, float(probs[targets].sum()), tv_per_pixel(final[k]), seconds, history))
    return results


def optimise(
    net: Any,
    objective: Callable[[Any], tuple[Any, Any]],
    config: IdealConfig,
    *,
    n: int = 1,
    progress: bool = True,
    description: str = "ideal image",
    log_every: int = 8,
) -> tuple[np.ndarray, float, dict[str, list[float]]]:
    """The optimisation loop shared by class and channel images: ``n`` images (``config``'s
    parameterisation, octaves, transforms, regularisers, blur) raise ``objective(net(x))``, which
    returns ``(score to raise, similarity to lower)`` for the batch ``x`` of ``config.batch``
    transformed copies of the n images (copy-major: copy k of image i is row k * n + i); the
    similarity is weighted by ``config.diversity``. Returns the uint8 images (n, H, W, 3) at the
    net's input size, the seconds per image and the history.

    Any Keras backend: each step is one compiled function (:mod:`transfer_lab.models.gradients`)
    of the variables' value, Adam's moments and the step's random draws (made in NumPy from
    ``config.seed``), returning the new value and moments: nothing stateful inside it."""
    from keras import ops

    from transfer_lab.models.gradients import compiled, to_numpy, value_and_grad
    from transfer_lab.runtime.progress import progress_bar

    h, w = model_input_size(net)
    transforms = config.transforms()
    regs = [(REGULARIZERS[k], float(v)) for k, v in config.regularizers.items() if float(v) > 0]
    rng = np.random.default_rng(int(config.seed))
    copies = max(1, int(config.batch))
    diversity = float(config.diversity) if n > 1 else 0.0
    lr, beta1, beta2, eps = float(config.learning_rate), 0.9, 0.999, 1e-7  # Keras's Adam defaults
    sizes = [
        (max(8, round(h / config.octave_scale ** k)), max(8, round(w / config.octave_scale ** k)))
        for k in reversed(range(config.octaves))
    ]
    per_octave = [config.steps // config.octaves + (1 if i < config.steps % config.octaves else 0)
                  for i in range(config.octaves)]
    history: dict[str, list[float]] = {"step": [], "logit": [], "total_variation": [], "similarity": []}
    start = time.perf_counter()
    bar = progress_bar(total=config.steps, desc=description, disable=not progress, leave=False)
    image = None
    done = 0
    for octave, (size, n_steps) in enumerate(zip(sizes, per_octave)):
        param = Parameterization(size, fourier=config.parameterization == "fourier",
                                 decorrelate=config.decorrelate_colour, seed=config.seed, n=n)
        if image is not None:
            param.assign_image(image)

        def loss_of(value: Any, *draws: Any) -> tuple[Any, Any]:
            img = param.image_of(value)
            full = img if tuple(img.shape[1:3]) == (h, w) else ops.image.resize(img, (h, w), interpolation="bilinear")
            x = ops.tile(full, (copies, 1, 1, 1)) if copies > 1 else full
            for t, d in zip(transforms, draws):
                x = t.apply(x, d)
            score, similarity = objective(net(x, training=False))
            loss = -score
            for fn, weight in regs:
                loss = loss + weight * ops.mean(fn(img))
            if diversity:
                loss = loss + diversity * similarity
            return loss, (score, ops.mean(total_variation(img)), similarity)

        grad_of = value_and_grad(loss_of)

        def adam(value: Any, m: Any, v: Any, t: Any, *draws: Any) -> tuple[Any, ...]:
            _, aux, g = grad_of(value, *draws)
            m = m + (g - m) * (1.0 - beta1)
            v = v + (ops.square(g) - v) * (1.0 - beta2)
            alpha = lr * ops.sqrt(1.0 - ops.power(beta2, t)) / (1.0 - ops.power(beta1, t))
            return (value - alpha * m / (ops.sqrt(v) + eps), m, v, *aux)

        step = compiled(adam, variables=net.variables)
        value = to_numpy(param.variable.value)
        m, v = np.zeros_like(value), np.zeros_like(value)
        for i in range(n_steps):
            draws = [t.draw(copies * n, rng) for t in transforms]
            value, m, v, score, tv, sim = step(value, m, v, np.float32(i + 1), *draws)
            done += 1
            if config.blur_every and done % config.blur_every == 0 and i < n_steps - 1:
                value = param.value_of(gaussian_blur(param.image_of(value), config.blur_sigma))
            if done % log_every == 0 or i == n_steps - 1:
                history["step"].append(done)
                score = float(to_numpy(score))
                history["logit"].append(score)
                history["total_variation"].append(float(to_numpy(tv)))
                history["similarity"].append(float(to_numpy(sim)))
                bar.set_postfix(octave=f"{octave + 1}/{config.octaves}", score=f"{score:.1f}")
            bar.update(1)
        param.variable.assign(to_numpy(value))
        image = to_numpy(param.image())
    bar.close()
    final = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if final.shape[1:3] != (h, w):  # only when the last octave is smaller (never with octave_scale >= 1)
        final = np.clip(np.rint(to_numpy(ops.image.resize(final.astype(np.float32), (h, w)))), 0, 255).astype(np.uint8)
    return final, (time.perf_counter() - start) / n, history


def generate_channels(
    layer_model: Any,
    channels: Sequence[int],
    config: IdealConfig = IdealConfig(),
    *,
    progress: bool = True,
    description: str = "channel images",
) -> tuple[np.ndarray, np.ndarray]:
    """One image per channel of ``layer_model``'s output (0-255 RGB in, one (N, h, w, C) layer out),
    optimised together: image i raises the mean activation of ``channels[i]`` (a channel
    objective). Returns the uint8 images (len(channels), H, W, 3) and, on each final image, the
    mean activation of its channel."""
    from keras import ops

    chans = [int(c) for c in channels]
    n_ch = int(layer_model.output_shape[-1])
    if not chans or not all(0 <= c < n_ch for c in chans):
        raise IdealError(f"channels {chans} are out of range for a layer with {n_ch} channels.")
    n = len(chans)
    copies = max(1, int(config.batch))
    mask = np.eye(n_ch, dtype=np.float32)[chans]  # (n, C)

    def objective(feats: Any) -> tuple[Any, Any]:
        f = ops.mean(ops.reshape(feats, (copies, n, -1, feats.shape[-1])), axis=(0, 2))  # (n, C)
        return ops.mean(ops.sum(f * mask, axis=1)), ops.convert_to_tensor(0.0)

    cfg = replace(config, objective="logit", diversity=0.0, n_images=n)
    final, _, _ = optimise(layer_model, objective, cfg, n=n, progress=progress, description=description)
    acts = ops.convert_to_numpy(layer_model(final.astype(np.float32), training=False))
    mean = acts.reshape(n, -1, acts.shape[-1]).mean(axis=1)
    return final, mean[np.arange(n), chans]


def class_probabilities(model: Any, image: np.ndarray) -> np.ndarray:
    """Softmax over ``model``'s logits for one 0-255 image, resized to the model's input size."""
    from keras import ops

    h, w = model_input_size(model)
    x = np.asarray(image, np.float32)[None]
    if x.shape[1:3] != (h, w):
        x = ops.convert_to_numpy(ops.image.resize(x, (h, w), interpolation="bilinear"))
    return as_probabilities(np.asarray(model(x, training=False))[0])  # a logits model gives logits


def group_rank(probs: np.ndarray, indices: Iterable[int]) -> tuple[float, int]:
    """(summed probability, rank) of a group of classes: rank 1 means no class outside the group
    beats the group's best member."""
    idx = sorted(set(int(i) for i in indices))
    p = np.asarray(probs, np.float64)
    best = p[idx].max()
    mask = np.ones(len(p), bool)
    mask[idx] = False
    return float(p[idx].sum()), int(1 + np.sum(p[mask] > best))
