""""Ideal" class images: gradient ascent on one class's pre-softmax score, made of small pieces.

An image is optimised so that a model's ``logits`` for one class grow, while staying a valid
0-255 RGB picture that people can read. The pieces compose:

- **Parameterisation** (how the image is stored as variables): ``pixel`` (one variable per pixel
  and channel) or ``fourier`` (the image's 2-D spectrum, scaled by 1/frequency so that low
  frequencies move first), optionally with **decorrelated colour** (the variables live in a
  de-correlated colour space, mixed back into RGB by a fixed 3x3 matrix). Either way the last step
  is a sigmoid times 255, so the image is *always* inside 0-255 without clipping.
- **Regularisers** (penalties added to the loss): :func:`total_variation` and :func:`l2`.
- **Transformation robustness** (random changes to the image before the model sees it, new each
  step): :func:`jitter` (shift), :func:`scale`, :func:`rotate`.
- **Octaves**: optimise a smaller image first, then enlarge it and go on (coarse to fine).

Ideas from Olah et al., "Feature Visualization" (Distill, 2017) and Lucid; the code is our own.

Main entry: :func:`generate` (one class) with an :class:`IdealConfig`.
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

def total_variation(images: Any) -> Any:
    """Mean total variation per pixel of each image, in 0-255 units: the mean absolute difference
    to the pixel below plus the mean absolute difference to the pixel on the right (over all
    channels). A constant image gives 0; a 0/255 checkerboard gives 510. Shape (N,)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, dtype=tf.float32)
    if x.shape.rank == 3:
        x = x[None]
    dy = tf.reduce_mean(tf.abs(x[:, 1:, :, :] - x[:, :-1, :, :]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.abs(x[:, :, 1:, :] - x[:, :, :-1, :]), axis=[1, 2, 3])
    return dy + dx


def l2(images: Any) -> Any:
    """Mean squared distance of each image from mid-grey, in units of the full range (0..0.25).
    Shape (N,)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, dtype=tf.float32)
    if x.shape.rank == 3:
        x = x[None]
    return tf.reduce_mean(tf.square(x / 255.0 - 0.5), axis=[1, 2, 3])


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

Transform = Callable[[Any, Any], Any]  # (images, tf.random.Generator) -> images


def jitter(pixels: int) -> Transform:
    """Shift by a random whole number of pixels in -pixels..pixels (edges reflected)."""

    def apply(x: Any, rng: Any) -> Any:
        import tensorflow as tf

        if pixels <= 0:
            return x
        h, w = x.shape[1], x.shape[2]
        padded = tf.pad(x, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="REFLECT")
        oy, ox = tf.unstack(rng.uniform([2], 0, 2 * pixels + 1, dtype=tf.int32))
        out = padded[:, oy:oy + h, ox:ox + w, :]
        out.set_shape(x.shape)
        return out

    apply.__name__ = f"jitter({pixels})"
    return apply


def _affine(x: Any, scale: Any, angle: Any) -> Any:
    """Zoom by ``scale`` and rotate by ``angle`` (radians) about the centre, bilinear, reflected."""
    import tensorflow as tf

    h, w = int(x.shape[1]), int(x.shape[2])
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # output (x', y') samples input at inverse-transformed coordinates
    c, s = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1 = c, -s
    b0, b1 = s, c
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zero = tf.zeros_like(c)
    matrix = tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])[None, :]
    matrix = tf.tile(tf.cast(matrix, tf.float32), [tf.shape(x)[0], 1])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=matrix, output_shape=tf.constant([h, w], tf.int32),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="REFLECT",
    )


def scale(low: float, high: float) -> Transform:
    """Zoom by a random factor in [low, high] about the centre."""

    def apply(x: Any, rng: Any) -> Any:
        import tensorflow as tf

        if low == high == 1.0:
            return x
        return _affine(x, rng.uniform([], low, high), tf.constant(0.0))

    apply.__name__ = f"scale({low}, {high})"
    return apply


def rotate(degrees: float) -> Transform:
    """Rotate by a random angle in -degrees..degrees about the centre."""

    def apply(x: Any, rng: Any) -> Any:
        import tensorflow as tf

        if degrees <= 0:
            return x
        angle = rng.uniform([], -degrees, degrees) * (math.pi / 180.0)
        return _affine(x, tf.constant(1.0), angle)

    apply.__name__ = f"rotate({degrees})"
    return apply


# ---------------------------------------------------------------------------------------------
# Parameterisations: variables <-> 0-255 image
# ---------------------------------------------------------------------------------------------

def _freq_scale(h: int, w: int, decay: float = 1.0) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay).astype(np.float32)


class Parameterization:
    """Variables that map to one (1, H, W, 3) image in 0-255 through a sigmoid.

    ``fourier``: the variables are the real and imaginary parts of the image's spectrum, each
    frequency scaled by 1/f. ``decorrelate``: the three channels are mixed into RGB by the
    ImageNet colour-correlation square root. Both only change the *geometry* of the optimisation
    (which directions are cheap), not which images can be reached.
    """

    def __init__(self, size: tuple[int, int], *, fourier: bool = True, decorrelate: bool = True,
                 init_std: float = 0.01, seed: int = 0):
        import tensorflow as tf

        self.size = (int(size[0]), int(size[1]))
        self.fourier = bool(fourier)
        self.decorrelate = bool(decorrelate)
        h, w = self.size
        rng = np.random.default_rng(seed)
        if self.fourier:
            self._scale = tf.constant(_freq_scale(h, w))
            shape = (2, 3, h, w // 2 + 1)
        else:
            shape = (1, h, w, 3)
        self.variable = tf.Variable(rng.normal(0.0, init_std, size=shape).astype(np.float32), name="ideal_image")

    def image(self) -> Any:
        """The current image, float32 (1, H, W, 3) in 0-255."""
        import tensorflow as tf

        h, w = self.size
        if self.fourier:
            spectrum = tf.complex(self.variable[0], self.variable[1]) * tf.cast(self._scale, tf.complex64)
            t = tf.signal.irfft2d(spectrum, fft_length=[h, w])  # (3, H, W)
            t = tf.transpose(t, (1, 2, 0))[None] * (math.sqrt(h * w) / 4.0)
        else:
            t = self.variable
        if self.decorrelate:
            t = tf.tensordot(t, tf.constant(_COLOUR.T), axes=1)
        return tf.sigmoid(t) * 255.0

    def assign_image(self, image: np.ndarray) -> None:
        """Set the variables so that :meth:`image` gives ``image`` (resized to this size)."""
        import tensorflow as tf

        h, w = self.size
        x = tf.convert_to_tensor(np.asarray(image, np.float32))
        if x.shape.rank == 3:
            x = x[None]
        if tuple(x.shape[1:3]) != (h, w):
            x = tf.image.resize(x, (h, w), method="bicubic")
        p = tf.clip_by_value(x / 255.0, _EPS, 1.0 - _EPS)
        t = tf.math.log(p) - tf.math.log1p(-p)
        if self.decorrelate:
            t = tf.tensordot(t, tf.constant(np.linalg.inv(_COLOUR.T).astype(np.float32)), axes=1)
        if self.fourier:
            t = tf.transpose(t[0], (2, 0, 1)) / (math.sqrt(h * w) / 4.0)
            spectrum = tf.signal.rfft2d(t) / tf.cast(self._scale, tf.complex64)
            value = tf.stack([tf.math.real(spectrum), tf.math.imag(spectrum)])
        else:
            value = t
        self.variable.assign(tf.cast(value, tf.float32))


# ---------------------------------------------------------------------------------------------
# Configuration and the optimisation loop
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IdealConfig:
    """Everything that shapes one ideal image; built from the ``visualization`` parameters by
    :meth:`transfer_lab.params.visualization.VisualizationParams.ideal_config`."""

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
    batch: int = 1  # randomly transformed copies per step (averaged)

    def without_smoothness(self) -> "IdealConfig":
        """The same run with the smoothness terms (total variation, L2) switched off."""
        return replace(self, regularizers={k: 0.0 for k in self.regularizers})

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
    seconds: float
    history: dict[str, list[float]]


def model_input_size(model: Any) -> tuple[int, int]:
    shape = model.input_shape
    if shape[1] is None or shape[2] is None:
        raise IdealError(f"model {model.name!r} has no fixed input size; build it with an image_size.")
    return int(shape[1]), int(shape[2])


def generate(
    logits_model: Any,
    class_index: int | Sequence[int],
    config: IdealConfig = IdealConfig(),
    *,
    progress: bool = True,
    description: str | None = None,
    log_every: int = 8,
) -> IdealResult:
    """An image that ``logits_model`` (0-255 RGB in, pre-softmax scores out) scores high for
    ``class_index`` (one class, or a group such as every cat breed).

    Loss = -logit[class] (for a group: the log-sum-exp of its logits, i.e. its summed
    probability up to the softmax normaliser; averaged over ``config.batch`` randomly transformed
    copies)
    + sum of weight * regulariser(image). Each octave runs its share of ``config.steps`` with Adam.
    """
    import keras
    import tensorflow as tf
    from transfer_lab.runtime.progress import progress_bar

    h, w = model_input_size(logits_model)
    n_classes = int(logits_model.output_shape[-1])
    targets = sorted({int(i) for i in (class_index if isinstance(class_index, (list, tuple, np.ndarray)) else [class_index])})
    if not targets or not all(0 <= i < n_classes for i in targets):
        raise IdealError(f"class index {class_index} is out of range for a model with {n_classes} classes.")
    transforms = config.transforms()
    regs = [(REGULARIZERS[k], float(v)) for k, v in config.regularizers.items() if float(v) > 0]
    rng = tf.random.Generator.from_seed(int(config.seed))
    target_t = tf.constant(targets, tf.int32)

    sizes = [
        (max(8, round(h / config.octave_scale ** k)), max(8, round(w / config.octave_scale ** k)))
        for k in reversed(range(config.octaves))
    ]
    per_octave = [config.steps // config.octaves + (1 if i < config.steps % config.octaves else 0)
                  for i in range(config.octaves)]
    history: dict[str, list[float]] = {"step": [], "logit": [], "total_variation": []}
    start = time.perf_counter()
    bar = progress_bar(total=config.steps, desc=description or f"ideal image (class {class_index})", disable=not progress,
               leave=False)
    image = None
    done = 0
    for octave, (size, n_steps) in enumerate(zip(sizes, per_octave)):
        param = Parameterization(size, fourier=config.parameterization == "fourier",
                                 decorrelate=config.decorrelate_colour, seed=config.seed)
        if image is not None:
            param.assign_image(image)
        opt = keras.optimizers.Adam(config.learning_rate)
        opt.build([param.variable])

        @tf.function(reduce_retracing=True)
        def step() -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                img = param.image()
                full = img if tuple(img.shape[1:3]) == (h, w) else tf.image.resize(img, (h, w), method="bilinear")
                x = tf.tile(full, [config.batch, 1, 1, 1]) if config.batch > 1 else full
                for t in transforms:
                    x = t(x, rng)
                scores = tf.gather(logits_model(x, training=False), target_t, axis=1)
                logit = tf.reduce_mean(tf.reduce_logsumexp(scores, axis=1) if len(targets) > 1 else scores[:, 0])
                loss = -logit
                for fn, weight in regs:
                    loss = loss + weight * tf.reduce_mean(fn(img))
            grad = tape.gradient(loss, param.variable)
            opt.apply_gradients([(grad, param.variable)])
            return logit, tf.reduce_mean(total_variation(img))

        for i in range(n_steps):
            logit, tv = step()
            done += 1
            if done % log_every == 0 or i == n_steps - 1:
                history["step"].append(done)
                history["logit"].append(float(logit))
                history["total_variation"].append(float(tv))
                bar.set_postfix(octave=f"{octave + 1}/{config.octaves}", logit=f"{float(logit):.1f}")
            bar.update(1)
        image = param.image().numpy()[0]
    bar.close()
    final = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if final.shape[:2] != (h, w):  # only when the last octave is smaller (never with octave_scale >= 1)
        final = np.clip(np.rint(tf.image.resize(final[None].astype(np.float32), (h, w)).numpy()[0]), 0, 255).astype(np.uint8)
    seconds = time.perf_counter() - start
    logits = np.asarray(logits_model(final[None].astype(np.float32), training=False))[0].astype(np.float64)
    probs = softmax(logits)
    top = logits[targets].max()
    logit = float(top + np.log(np.exp(logits[targets] - top).sum()))
    return IdealResult(final, logit, float(probs[targets].sum()), tv_per_pixel(final), seconds, history)


def class_probabilities(model: Any, image: np.ndarray) -> np.ndarray:
    """Softmax over ``model``'s logits for one 0-255 image, resized to the model's input size."""
    import tensorflow as tf

    h, w = model_input_size(model)
    x = np.asarray(image, np.float32)[None]
    if x.shape[1:3] != (h, w):
        x = tf.image.resize(x, (h, w), method="bilinear").numpy()
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
