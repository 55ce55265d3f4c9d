"""Adversarial attacks in pixel space: FGSM and PGD (BIM) under an L-infinity budget.

Everything here works on the project's model contract: RGB pixels in 0-255 go in, the model does
its own preprocessing, and a layer named ``logits`` holds the pre-softmax scores. So the budget
``epsilon`` is in 0-255 pixel units (``epsilon=2`` is the "2/255" of the papers) whatever the
backbone's preprocessing is.

What the attacks return are real images: every pixel is a whole number in 0..255 and within
``epsilon`` of the original (with ``quantize=True``, the default). Success is judged on exactly
those rounded pixels inside the loop, so an image reported as successful is one that, written as a
lossless PNG and decoded again, still fools the model.

Targets and true classes are *sets* of class indices: "cat" on an ImageNet model is any of the
five domestic-cat classes 281-285 (see :mod:`transfer_lab.data.classes`). Targeted success means the top
class is in the target set; untargeted success means the top class has left the true set. The loss
is the cross-entropy of the set, ``log sum_{c in S} p_c``, ascended (targeted) or descended
(untargeted) with signed gradient steps, as in FGSM (Goodfellow et al. 2015) and PGD (Madry et al.
2018); ``early_stop`` freezes each image at its first success, which is what makes small budgets
cheap.

The whole batched loop is one compiled function (no retracing across budgets or step sizes; under
TensorFlow a ``tf.function`` that is not retraced across batch sizes either), which is where the
speed over a per-step eager implementation (e.g. IBM ART) comes from. The loops are written in
``keras.ops`` and take their gradients from :mod:`transfer_lab.models.gradients`, so they run on
any Keras backend (TensorFlow, JAX, PyTorch); TensorFlow stays the default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("fgsm", "pgd", "bim")

MAX_EPSILON = 255.0
WARN_EPSILON = 64.0


class AttackError(ValueError):
    """Attack parameters that cannot work; the message names the parameter and the fix."""


# --------------------------------------------------------------------------------------------
# Parameters


def check_epsilon(value: Any, param: str, *, allow_below_one: bool = False, quantize: bool = True) -> float:
    """A budget in 0-255 pixel units, or a clear error.

    Negative, non-numeric and > 255 budgets are refused; > 64 is allowed with a warning (that is a
    quarter of the whole range: the "adversarial" image is then plainly a different picture). A
    budget in (0, 1) on quantized images is refused unless ``allow_below_one``: no whole-pixel change
    fits in it, which almost always means the value was given in 0-1 units (2/255 = 0.0078).
    """
    try:
        eps = float(value)
    except (TypeError, ValueError):
        raise AttackError(f"{param}={value!r} is not a number: give the L-inf budget in 0-255 pixel units, e.g. 2.") from None
    if not math.isfinite(eps) or eps < 0:
        raise AttackError(f"{param}={value!r} must be a finite number >= 0 in 0-255 pixel units (e.g. 2 for 2/255).")
    if eps > MAX_EPSILON:
        raise AttackError(
            f"{param}={eps:g} is more than the whole 0-255 pixel range. The budget is in 0-255 pixel units: "
            "2 means 2/255. Use a value in 0..255 (typically 0.5..16)."
        )
    if eps > WARN_EPSILON:
        log.warning("%s=%g is over %g/255: the perturbation will be plainly visible.", param, eps, WARN_EPSILON)
    if quantize and 0 < eps < 1 and not allow_below_one:
        raise AttackError(
            f"{param}={eps:g} allows no change of a whole 8-bit pixel value, so the attack cannot do anything. "
            f"The budget is in 0-255 pixel units (not 0-1): for 2/255 pass {param}=2."
        )
    return eps


@dataclass(frozen=True)
class AttackConfig:
    """One attack (from the ``adversarial`` parameters: ``AdversarialParams.attack_config()``).
    ``epsilon`` and ``step_size`` are in 0-255 pixel units.

    - ``method``: ``fgsm`` (one step of size ``epsilon``), ``pgd`` (``steps`` signed steps of
      ``step_size``, projected on the L-inf ball; ``bim`` is the same without random start).
    - ``step_size``: ``None`` = ``epsilon / 4`` (reaches the corner of the ball in 4 steps, then
      refines), at least 0.25 so that whole-pixel changes happen.
    - ``random_start``: start from a uniform point in the ball (Madry's PGD).
    - ``early_stop``: stop each image at its first success (the smallest number of steps).
    - ``confidence``: the logit margin success needs (0 = the top class is enough).
    - ``quantize``: round to whole pixels inside the loop (real images; on by default).
    """

    method: str = "pgd"
    epsilon: float = 2.0
    step_size: float | None = None
    steps: int = 20
    random_start: bool = False
    early_stop: bool = True
    confidence: float = 0.0
    quantize: bool = True
    batch_size: int = 16
    seed: int = 0

    def validated(self, prefix: str = "adversarial") -> "AttackConfig":
        """The attack as it runs: ``fgsm`` is one step of ``epsilon``, random starts are PGD's only.
        Values from the parameters are checked already (AdversarialParams); this refuses what a
        direct caller (a test, a bench) could pass that cannot work."""
        method = str(self.method).strip().lower()
        if method not in METHODS:
            raise AttackError(f"{prefix}.method={self.method!r} is not one of {', '.join(METHODS)}.")
        eps = check_epsilon(self.epsilon, f"{prefix}.epsilon", quantize=bool(self.quantize), allow_below_one=True)
        bad = [f"{prefix}.{key}={value!r} must be {rule}" for key, value, ok, rule in (
            ("steps", self.steps, 1 <= int(self.steps) <= 10_000, "between 1 and 10000 (20 is usual)"),
            ("step_size", self.step_size, self.step_size is None or 0 < float(self.step_size) <= MAX_EPSILON,
             "> 0 and <= 255 (0-255 pixel units), or null for epsilon/4"),
            ("batch_size", self.batch_size, int(self.batch_size) >= 1, "a whole number >= 1"),
            ("confidence", self.confidence, math.isfinite(float(self.confidence)) and float(self.confidence) >= 0,
             "a logit margin >= 0 (0 = top class is enough)"),
        ) if not ok]
        if bad:
            raise AttackError(". ".join(bad) + ".")
        steps, step = int(self.steps), None if self.step_size is None else float(self.step_size)
        random_start = bool(self.random_start) and method == "pgd"
        if method == "fgsm":
            steps, step, random_start = 1, eps, False
        return replace(
            self, method=method, epsilon=eps, steps=steps, step_size=step, random_start=random_start,
            batch_size=int(self.batch_size), confidence=float(self.confidence), quantize=bool(self.quantize),
            early_stop=bool(self.early_stop), seed=int(self.seed),
        )

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        if self.step_size is not None:
            return float(self.step_size)
        if self.method == "fgsm":
            return float(self.epsilon)
        return max(float(self.epsilon) / 4.0, 0.25)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method, "epsilon": self.epsilon, "step_size": self.alpha, "steps": self.steps,
            "random_start": self.random_start, "early_stop": self.early_stop, "confidence": self.confidence,
            "quantize": self.quantize,
        }


# --------------------------------------------------------------------------------------------
# Success on class sets (the sets themselves: transfer_lab.data.classes.class_set)


def set_mask(sets: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    """(N, C) boolean membership of each row's set."""
    mask = np.zeros((len(sets), n_classes), dtype=bool)
    for i, s in enumerate(sets):
        mask[i, list(s)] = True
    return mask


def margin(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """max logit inside the set minus max logit outside it (> 0: the top class is in the set)."""
    z = np.asarray(logits, dtype=np.float64)
    inside = np.where(mask, z, -np.inf).max(axis=1)
    outside = np.where(mask, -np.inf, z).max(axis=1)
    return inside - outside


def is_success(logits: np.ndarray, mask: np.ndarray, targeted: bool, confidence: float = 0.0) -> np.ndarray:
    m = margin(logits, mask)
    return m > confidence if targeted else -m > confidence


# --------------------------------------------------------------------------------------------
# The attack


@dataclass
class AttackResult:
    adversarial: np.ndarray  # (N, H, W, 3) float32, whole pixel values in 0..255 when quantized
    success: np.ndarray  # (N,) bool, judged on ``adversarial`` itself
    steps: np.ndarray  # (N,) int: gradient steps taken to the first success (steps if never)
    clean_logits: np.ndarray  # (N, C)
    adv_logits: np.ndarray  # (N, C)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(len(self.success))


class PixelAttack:
    """FGSM / PGD against one model, compiled once (``tf.function`` / ``jax.jit``) and reused for
    any budget.

    ``model``: a classifier under the project's contract (0-255 in, a ``logits`` layer). Its
    logits sub-model is what the loss and the success test use.
    """

    def __init__(self, model: Any, *, jit_compile: bool = False):
        from transfer_lab.models.backbones import logits_model
        from transfer_lab.models.gradients import compiled
        from transfer_lab.runtime.quiet import quiet_tensorflow

        quiet_tensorflow()
        self.model = model
        self.logits_model = logits_model(model)
        self.n_classes = int(self.logits_model.output_shape[-1])
        self.input_shape = tuple(int(d) for d in model.input_shape[1:])
        h, w, c = self.input_shape
        image, mask = ((None, h, w, c), "float32"), ((None, self.n_classes), "bool")
        flag, number = ((), "bool"), ((), "float32")
        spec = [
            image,  # x0
            mask,  # set mask
            flag,  # targeted
            number,  # epsilon
            number,  # step size
            ((), "int32"),  # steps
            flag,  # random start
            flag,  # early stop
            flag,  # quantize
            number,  # confidence
            ((2,), "int32"),  # seed
        ]
        variables = self.logits_model.variables
        self._batch = compiled(self._attack_batch, variables=variables, input_signature=spec, jit_compile=jit_compile)
        step_spec = [
            image,  # x (the current iterate)
            image,  # x0
            mask,  # set mask
            flag,  # targeted
            number,  # epsilon
            number,  # step size
            flag,  # quantize
            number,  # confidence
        ]
        self._step = compiled(self._attack_step, variables=variables, input_signature=step_spec, jit_compile=jit_compile)

    # -- compiled parts ----------------------------------------------------------------------

    def _attack_batch(self, x0, mask, targeted, eps, alpha, steps, random_start, early_stop, quantize, confidence, seed):
        from keras import ops

        f32 = "float32"
        direction = ops.where(targeted, 1.0, -1.0)
        lo_c, hi_c, lo_q, hi_q = _budget_boxes(x0, eps)

        def real(x):
            return _whole_pixels(x, quantize, lo_q, hi_q)

        def set_margin(z):
            return _set_margin(z, mask, direction)

        def grad_and_logits(x):
            return _set_gradient(self.logits_model, x, mask, direction)

        n = ops.shape(x0)[0]
        start = _random_start(x0, eps, random_start, seed)
        x = ops.clip(start, lo_c, hi_c)
        best = real(x)
        done = ops.zeros([n], "bool")
        taken = ops.full([n], steps, "int32")
        z_best = ops.zeros([n, self.n_classes], f32)

        def cond(i, x, best, done, taken, z_best):
            return ops.logical_and(i < steps, ops.logical_not(ops.logical_and(early_stop, ops.all(done))))

        def body(i, x, best, done, taken, z_best):
            xr = real(x)
            g, z = grad_and_logits(xr)
            ok = set_margin(z) > confidence
            newly = ops.logical_and(ok, ops.logical_not(done))
            sel = ops.reshape(newly, [-1, 1, 1, 1])
            best = ops.where(sel, xr, best)
            z_best = ops.where(ops.reshape(newly, [-1, 1]), z, z_best)
            taken = ops.where(newly, i, taken)
            done = ops.logical_or(done, ok)
            active = ops.logical_or(ops.logical_not(early_stop), ops.logical_not(done))
            x_new = ops.clip(x + alpha * ops.sign(g), lo_c, hi_c)
            x = ops.where(ops.reshape(active, [-1, 1, 1, 1]), x_new, x)
            return i + 1, x, best, done, taken, z_best

        i0 = ops.convert_to_tensor(0, "int32")
        _, x, best, done, taken, z_best = _while_loop(cond, body, (i0, x, best, done, taken, z_best))
        # The last iterate has not been looked at yet.
        x_last = real(x)
        z_last = ops.cast(self.logits_model(x_last, training=False), f32)
        ok_last = set_margin(z_last) > confidence
        # early stop: keep each image's first success; otherwise the final image decides.
        use_best = ops.logical_and(early_stop, done)
        out = ops.where(ops.reshape(use_best, [-1, 1, 1, 1]), best, x_last)
        z_out = ops.where(ops.reshape(use_best, [-1, 1]), z_best, z_last)
        success = ops.where(early_stop, ops.logical_or(done, ok_last), ok_last)
        newly_last = ops.logical_and(ok_last, ops.logical_not(done))
        taken = ops.where(ops.logical_and(ops.logical_not(use_best), newly_last), steps, taken)
        return out, success, taken, z_out

    def _attack_step(self, x, x0, mask, targeted, eps, alpha, quantize, confidence):
        """One step of :meth:`_attack_batch`'s loop for images each at its own step: the whole-pixel
        image looked at, its logits, whether it succeeds, and the next iterate."""
        from keras import ops

        direction = ops.where(targeted, 1.0, -1.0)
        lo_c, hi_c, lo_q, hi_q = _budget_boxes(x0, eps)
        xr = _whole_pixels(x, quantize, lo_q, hi_q)
        g, z = _set_gradient(self.logits_model, xr, mask, direction)
        ok = _set_margin(z, mask, direction) > confidence
        x_new = ops.clip(x + alpha * ops.sign(g), lo_c, hi_c)
        return xr, z, ok, x_new

    def _run_early_stop(self, x: np.ndarray, mask: np.ndarray, targeted: bool, config: AttackConfig,
                        bar: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Early stop without waiting for a batch's slowest image: a working batch of
        ``batch_size`` images, each at its own step; an image leaves at its first success (or after
        its last step) and the next one takes its place. The same per-image result as
        :meth:`_attack_batch` with ``early_stop`` (random starts drawn per image), at the cost of the
        steps each image needs rather than the steps of the slowest image of its batch."""
        from transfer_lab.models.gradients import backend, to_numpy

        # JAX compiles once per input shape: the working batch is padded to its full size.
        pad = backend() != "tensorflow"
        n, steps, bs = len(x), int(config.steps), int(config.batch_size)
        eps = np.float32(config.epsilon)
        if config.random_start:
            rng = np.random.default_rng(config.seed)
            start = x + rng.uniform(-1.0, 1.0, x.shape).astype(np.float32) * eps
        else:
            start = x.copy()
        start = np.clip(start, np.maximum(x - eps, 0.0), np.minimum(x + eps, 255.0)).astype(np.float32)
        out = np.empty_like(x)
        success = np.zeros(n, bool)
        taken = np.full(n, steps, np.int64)
        z_out = np.zeros((n, self.n_classes), np.float32)
        consts = (np.bool_(targeted), np.float32(config.epsilon), np.float32(config.alpha),
                  np.bool_(config.quantize), np.float32(config.confidence))
        idx = np.zeros(0, np.int64)  # the images in the working batch
        cur = np.zeros((0, *x.shape[1:]), np.float32)  # their current iterates
        at = np.zeros(0, np.int64)  # their step
        queue = 0
        while queue < n or len(idx):
            if len(idx) < bs and queue < n:  # top the batch up from the queue
                add = np.arange(queue, min(n, queue + bs - len(idx)))
                queue += len(add)
                idx, at = np.concatenate([idx, add]), np.concatenate([at, np.zeros(len(add), np.int64)])
                cur = np.concatenate([cur, start[add]])
            m = len(idx)
            rows = np.concatenate([np.arange(m), np.full(bs - m, m - 1)]) if pad and m < bs else slice(None)
            res = self._step(cur[rows], x[idx][rows], mask[idx][rows], *consts)
            xr, z, ok, x_new = (to_numpy(r)[:m] for r in res)
            ok = ok.astype(bool)
            # at step < steps: a success stops the image there; at step == steps the last iterate
            # is looked at (its gradient is not used) and decides
            leave = ok | (at >= steps)
            gone = idx[leave]
            out[gone], z_out[gone], success[gone] = xr[leave], z[leave], ok[leave]
            taken[gone] = np.where(ok[leave], np.minimum(at[leave], steps), steps)
            bar.update(int(leave.sum()))
            stay = ~leave
            idx, cur, at = idx[stay], x_new[stay], at[stay] + 1
        return out, success, taken, z_out

    # -- public ------------------------------------------------------------------------------

    def predict_logits(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The logits of ``images`` (0-255), batch by batch (:func:`transfer_lab.models.predict.predict_array`)."""
        from transfer_lab.models.predict import predict_array

        return predict_array(self.logits_model, images, batch_size=batch_size)

    def run(
        self,
        images: np.ndarray,
        sets: Sequence[Sequence[int]] | np.ndarray,
        *,
        targeted: bool,
        config: AttackConfig,
        progress: bool | str = False,
    ) -> AttackResult:
        """Attack ``images`` (N, H, W, 3 in 0-255; rounded to whole pixels first).

        ``sets``: per image, the target set (``targeted``) or the true set (untargeted); an (N, C)
        boolean mask is accepted as well.
        """
        import time

        from transfer_lab.models.gradients import to_numpy
        from transfer_lab.runtime.progress import progress_bar

        config = config.validated()
        x = np.clip(np.rint(np.asarray(images, dtype=np.float32)), 0, 255).astype(np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise AttackError(f"images of shape {x.shape} do not fit the model's input {self.input_shape}.")
        mask = np.asarray(sets) if isinstance(sets, np.ndarray) and sets.dtype == bool else set_mask(sets, self.n_classes)
        if mask.shape != (len(x), self.n_classes):
            raise AttackError(f"{mask.shape[0]} class sets for {len(x)} images.")
        n = len(x)
        bs = config.batch_size
        outs, succ, steps, z_adv = [], [], [], []
        t0 = time.perf_counter()
        clean = self.predict_logits(x, bs)
        bar = progress_bar(total=n, desc=progress if isinstance(progress, str) else f"{config.method} eps={config.epsilon:g}",
                   unit="img", disable=not progress, leave=False)
        if config.early_stop and n:
            adv, ok, taken, z = self._run_early_stop(x, mask, targeted, config, bar)
            bar.close()
            return AttackResult(adv, ok, taken.astype(int), clean, z, time.perf_counter() - t0)
        for b in range(0, n, bs):
            sl = slice(b, b + bs)
            o, s, k, z = to_numpy(self._batch(
                x[sl], mask[sl], np.bool_(targeted), np.float32(config.epsilon), np.float32(config.alpha),
                np.int32(config.steps), np.bool_(config.random_start), np.bool_(config.early_stop),
                np.bool_(config.quantize), np.float32(config.confidence), np.array([config.seed, b], np.int32),
            ))
            outs.append(o)
            succ.append(s)
            steps.append(k)
            z_adv.append(z)
            bar.update(len(o))
        bar.close()
        seconds = time.perf_counter() - t0
        if n == 0:
            empty = np.zeros((0, self.n_classes), np.float32)
            return AttackResult(x, np.zeros(0, bool), np.zeros(0, int), empty, empty, seconds)
        return AttackResult(
            adversarial=np.concatenate(outs),
            success=np.concatenate(succ).astype(bool),
            steps=np.concatenate(steps).astype(int),
            clean_logits=clean,
            adv_logits=np.concatenate(z_adv),
            seconds=seconds,
        )


def fgsm(model: Any, images: np.ndarray, sets: Sequence[Sequence[int]], *, epsilon: float, targeted: bool, **kwargs: Any) -> AttackResult:
    """One signed-gradient step of size ``epsilon`` (0-255 units), rounded and clipped."""
    cfg = AttackConfig(method="fgsm", epsilon=epsilon, **kwargs)
    return PixelAttack(model).run(images, sets, targeted=targeted, config=cfg)


def pgd(model: Any, images: np.ndarray, sets: Sequence[Sequence[int]], *, epsilon: float, targeted: bool, **kwargs: Any) -> AttackResult:
    """Projected signed-gradient steps inside the L-inf ball of ``epsilon`` (0-255 units)."""
    cfg = AttackConfig(method=kwargs.pop("method", "pgd"), epsilon=epsilon, **kwargs)
    return PixelAttack(model).run(images, sets, targeted=targeted, config=cfg)


def perturbation_norms(original: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image L-inf and L2 of ``adversarial - original`` in 0-255 units."""
    d = np.asarray(adversarial, np.float64) - np.asarray(original, np.float64)
    d = d.reshape(len(d), -1)
    return np.abs(d).max(axis=1) if d.size else np.zeros(len(d)), np.sqrt((d**2).sum(axis=1))


# -- the pieces both compiled loops share (keras.ops; called inside the compiled functions) ------

_BIG = 1e9  # a logit no class reaches: masks classes out of a max / logsumexp


def _budget_boxes(x0, eps):
    """The L-inf box around ``x0`` within 0-255, and its whole-pixel version (ceil/floor keep the
    rounded image inside the budget)."""
    from keras import ops

    lo_c = ops.maximum(x0 - eps, 0.0)
    hi_c = ops.minimum(x0 + eps, 255.0)
    lo_q = ops.maximum(ops.ceil(x0 - eps - 1e-4), 0.0)
    hi_q = ops.minimum(ops.floor(x0 + eps + 1e-4), 255.0)
    return lo_c, hi_c, lo_q, hi_q


def _whole_pixels(x, quantize, lo_q, hi_q):
    """The image as it would be saved: rounded into the whole-pixel box when ``quantize``."""
    from keras import ops

    return ops.cond(quantize, lambda: ops.clip(ops.round(x), lo_q, hi_q), lambda: x)


def _set_margin(z, mask, direction):
    """Best logit inside the class set minus best outside, signed so that > 0 means success."""
    from keras import ops

    inside = ops.max(ops.where(mask, z, -_BIG), axis=1)
    outside = ops.max(ops.where(mask, -_BIG, z), axis=1)
    return direction * (inside - outside)


def _set_gradient(logits_model, x, mask, direction):
    """Gradient of the (signed) log-probability of the class set, and the logits."""
    from keras import ops

    from transfer_lab.models.gradients import value_and_grad

    def objective(x):
        z = ops.cast(logits_model(x, training=False), "float32")
        log_p_set = ops.logsumexp(ops.where(mask, z, -_BIG), axis=1) - ops.logsumexp(z, axis=1)
        return direction * log_p_set, z

    _, z, grad = value_and_grad(objective)(x)
    return grad, z


def _random_start(x0, eps, random_start, seed):
    """``x0`` plus uniform noise in [-eps, eps] drawn from ``seed`` (2 int32) when ``random_start``.
    TensorFlow keeps its stateless draw (the same starts as before the port); JAX folds the seed
    into a key; PyTorch draws on the host from a generator seeded with it."""
    from keras import ops

    from transfer_lab.models.gradients import backend

    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.cond(random_start, lambda: x0 + tf.random.stateless_uniform(tf.shape(x0), seed, -1.0, 1.0) * eps,
                       lambda: x0)
    if name == "jax":
        import jax

        key = jax.random.fold_in(jax.random.key(seed[0]), seed[1])
        noise = jax.random.uniform(key, x0.shape, "float32", -1.0, 1.0)
    else:
        import torch

        s = [int(v) for v in ops.convert_to_numpy(seed)]
        gen = torch.Generator().manual_seed(s[0] * 1_000_003 + s[1])
        noise = ops.convert_to_tensor(torch.rand(tuple(x0.shape), generator=gen).numpy() * 2.0 - 1.0, "float32")
    return ops.where(random_start, x0 + noise * eps, x0)


def _while_loop(cond, body, loop_vars):
    """``keras.ops.while_loop``; under TensorFlow ``tf.while_loop`` with one iteration at a time as
    before the port (each step needs the previous one)."""
    from keras import ops

    from transfer_lab.models.gradients import backend

    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.while_loop(cond, body, loop_vars, parallel_iterations=1)
    return ops.while_loop(cond, body, loop_vars)
