"""Gradients and compiled functions on any Keras 3 backend: the one place that calls TensorFlow,
JAX or PyTorch for autodiff, so the gradient loops (attacks, explanations, ideal images) are written
once in ``keras.ops``.

Two pieces, chosen by ``keras.backend.backend()`` when they are called:

- :func:`value_and_grad` ``(fn)`` -> ``g`` with ``g(x, *args) == (value, aux, d sum(value) / d x)``,
  where ``fn(x, *args) -> (value, aux)``. ``value`` may be a scalar or a batch of per-example
  scores (the gradient is that of their sum); ``aux`` is any pytree of tensors, returned as is.
  TensorFlow: ``tf.GradientTape``; JAX: ``jax.value_and_grad(has_aux=True)``; PyTorch:
  ``torch.autograd.grad``.
- :func:`compiled` ``(fn, variables=...)`` -> ``fn`` compiled where the backend compiles:
  ``tf.function`` (optionally with an ``input_signature``, traced once for every batch size),
  ``jax.jit`` (the ``variables``' current values are passed in on every call, so a model whose
  weights change afterwards is not served stale constants), and PyTorch eager (``torch.compile`` on
  request: ``compile_torch=True``; it rarely pays for the small loops here).

Model calls inside ``fn`` must be stateless (``training=False``, no BatchNorm updates, no dropout):
under JAX a state update inside ``jax.jit`` would be lost.

Example (an input gradient of a classifier's top score)::

    def score(x):
        probs = model(x, training=False)
        return ops.max(probs, axis=-1), probs

    step = compiled(value_and_grad(score), variables=model.variables)
    top, probs, grads = step(images)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence


def backend() -> str:
    """The Keras backend in use: ``tensorflow``, ``jax`` or ``torch``."""
    import keras

    return keras.backend.backend()


def value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any, Any]]:
    """``fn(x, *args) -> (value, aux)`` -> ``g(x, *args) -> (value, aux, d sum(value) / d x)``.

    ``x`` is one tensor (or array), or a tuple of them (the gradient is then a tuple of the same
    length); each gradient has its tensor's shape. ``value`` is summed before differentiating, so a
    batch of independent per-example scores gives per-example gradients. ``args`` are not
    differentiated.
    """
    name = backend()
    if name == "tensorflow":
        return _tf_value_and_grad(fn)
    if name == "jax":
        return _jax_value_and_grad(fn)
    if name == "torch":
        return _torch_value_and_grad(fn)
    raise NotImplementedError(f"KERAS_BACKEND={name}: gradients are implemented for tensorflow, jax and torch.")


def compiled(fn: Callable[..., Any], *, variables: Sequence[Any] = (), input_signature: Sequence[Any] | None = None,
             jit_compile: bool = False, compile_torch: bool = False, static_argnums: Sequence[int] = ()) -> Callable[..., Any]:
    """``fn`` compiled for the backend in use (see the module's docstring).

    - ``variables``: the Keras variables ``fn`` reads (``model.variables``); JAX only: their values
      become arguments of the jitted function instead of baked-in constants.
    - ``input_signature``: TensorFlow only, ``tf.TensorSpec``s (or ``(shape, dtype)`` pairs); JAX
      retraces per input shape anyway.
    - ``jit_compile``: TensorFlow's XLA (JAX always compiles with XLA).
    - ``static_argnums``: JAX only, arguments that are Python values (retraced per value).
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        sig = None
        if input_signature is not None:
            sig = [s if isinstance(s, tf.TensorSpec) else tf.TensorSpec(*s) for s in input_signature]
        return tf.function(fn, input_signature=sig, jit_compile=jit_compile, reduce_retracing=sig is None)
    if name == "jax":
        return _jax_compiled(fn, list(variables), tuple(static_argnums))
    if name == "torch":
        if compile_torch:
            import torch

            return torch.compile(fn)
        return fn
    raise NotImplementedError(f"KERAS_BACKEND={name}: compiled functions are implemented for tensorflow, jax and torch.")


def forward(model: Any, input_signature: Sequence[Any] | None = None) -> Callable[[Any], Any]:
    """``model(x, training=False)`` compiled for the backend in use (:func:`compiled`, the model's
    variables passed in under JAX). Takes numpy arrays or TensorFlow tensors (a tf.data batch:
    converted to numpy first on the other backends)."""
    fn = compiled(lambda x: model(x, training=False), variables=model.variables, input_signature=input_signature)
    if backend() == "tensorflow":
        return fn

    def call(x: Any) -> Any:
        import numpy as np

        return fn(np.asarray(x))

    return call


def tracing_count(fn: Callable[..., Any]) -> int:
    """How many times a function from :func:`compiled` was traced (TensorFlow: once for every
    batch size under a signature; JAX: once per input shape; PyTorch eager: 0)."""
    if hasattr(fn, "experimental_get_tracing_count"):
        return int(fn.experimental_get_tracing_count())
    return int(getattr(fn, "tracing_count", 0))


def to_numpy(x: Any) -> Any:
    """A backend tensor (or a nested list/tuple of them) as numpy."""
    import keras

    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(v) for v in x)
    return keras.ops.convert_to_numpy(x)


# -- TensorFlow ------------------------------------------------------------------------------


def _tf_value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any, Any]]:
    def g(x: Any, *args: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        x = tuple(tf.convert_to_tensor(t) for t in x) if isinstance(x, (tuple, list)) else tf.convert_to_tensor(x)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)  # watching the input records every op after it, frozen layers included
            value, aux = fn(x, *args)
            total = tf.reduce_sum(value)
        grad = tape.gradient(total, x)
        return value, aux, tuple(grad) if isinstance(x, tuple) else grad

    return g


# -- JAX -------------------------------------------------------------------------------------


def _jax_value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any, Any]]:
    def g(x: Any, *args: Any) -> tuple[Any, Any, Any]:
        import jax
        import jax.numpy as jnp

        def total(x: Any) -> tuple[Any, tuple[Any, Any]]:
            value, aux = fn(x, *args)
            return jnp.sum(value), (value, aux)

        x = tuple(jnp.asarray(t) for t in x) if isinstance(x, (tuple, list)) else jnp.asarray(x)
        (_, (value, aux)), grad = jax.value_and_grad(total, has_aux=True)(x)
        return value, aux, grad

    return g


def _jax_compiled(fn: Callable[..., Any], variables: list[Any], static_argnums: tuple[int, ...]) -> Callable[..., Any]:
    import jax
    import keras

    def pure(values: list[Any], *args: Any) -> Any:
        call.tracing_count += 1  # runs only while jax.jit traces
        if not variables:
            return fn(*args)
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(pure, static_argnums=tuple(i + 1 for i in static_argnums))

    def call(*args: Any) -> Any:
        return jitted([v.value for v in variables], *args)

    call.tracing_count = 0  # type: ignore[attr-defined]
    return call


# -- PyTorch ---------------------------------------------------------------------------------


def _torch_value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any, Any]]:
    def g(x: Any, *args: Any) -> tuple[Any, Any, Any]:
        import keras
        import torch

        many = isinstance(x, (tuple, list))
        xs = tuple(keras.ops.convert_to_tensor(t).detach().requires_grad_(True) for t in (x if many else (x,)))
        with torch.enable_grad():
            value, aux = fn(xs if many else xs[0], *args)
            grads = torch.autograd.grad(value.sum(), xs, allow_unused=True)
        grads = tuple(torch.zeros_like(t) if g is None else g for t, g in zip(xs, grads))
        return value.detach(), _detach(aux), grads if many else grads[0]

    return g


def _detach(tree: Any) -> Any:
    if isinstance(tree, (list, tuple)):
        return type(tree)(_detach(v) for v in tree)
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    return tree.detach() if hasattr(tree, "detach") else tree
