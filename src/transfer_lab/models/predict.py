"""Batch prediction: one traced forward pass per model, over the local replicas when a
distribution strategy has several, and class probabilities for a list of photos."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from transfer_lab.data.tfdata import image_dataset
from transfer_lab.runtime.strategy import current


def predict_batches(model: Any, dataset: Any, rt: Any = None) -> Iterator[Any]:
    """Model outputs batch by batch (numpy, in order), split over the local replicas when there
    are several. Under ``multi_worker`` each worker computes every batch itself (inference is not
    split across machines; training is)."""
    import tensorflow as tf

    rt = rt or current()
    if rt is None or rt.replicas == 1 or rt.workers > 1:
        from transfer_lab.models import gradients

        forward = _compiled(model, None, lambda: gradients.forward(model))
        for batch in dataset:
            yield np.asarray(forward(batch))
        return
    strategy = rt.strategy
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dist = strategy.experimental_distribute_dataset(dataset.with_options(opts))
    step = _compiled(model, strategy, lambda: tf.function(
        lambda x: strategy.run(lambda t: model(t, training=False), args=(x,)), reduce_retracing=True))

    for batch in dist:
        parts = [np.asarray(p) for p in strategy.experimental_local_results(step(batch))]
        yield np.concatenate([p for p in parts if len(p)]) if any(len(p) for p in parts) else parts[0]


_COMPILED: dict[tuple[int, int], tuple[Any, Any]] = {}


def _compiled(model: Any, strategy: Any, make: Any) -> Any:
    """One traced forward function per (model, strategy), reused across calls (tracing a backbone
    takes seconds)."""
    import weakref

    key = (id(model), id(strategy))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    fn = make()
    _COMPILED[key] = (weakref.ref(model), fn)
    return fn


def predict(model: Any, paths: Sequence[str], *, image_size: int, batch_size: int, desc: str = "Predicting",
            resize: str = "squash") -> np.ndarray:
    """Class probabilities for ``paths`` in order (decoded the ``resize`` way), with a progress bar."""
    from transfer_lab.runtime.progress import progress_bar

    out = []
    with progress_bar(total=len(paths), desc=desc, unit="img") as bar:
        for batch in image_dataset(paths, None, image_size=image_size, batch_size=batch_size, cache=False, shuffle=False,
                                   resize=resize):
            out.append(np.asarray(model(batch, training=False)))
            bar.update(len(out[-1]))
    n_classes = int(model.output_shape[-1])
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)


def predict_array(model: Any, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Model outputs for an in-memory array (e.g. cached features), in order, batch by batch
    (:func:`predict_batches`)."""
    import tensorflow as tf

    x = np.asarray(x, np.float32)
    out = list(predict_batches(model, tf.data.Dataset.from_tensor_slices(x).batch(batch_size)))
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Class probabilities from pre-softmax scores (float64, numerically stable). The one softmax
    of the project outside the models themselves."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def is_probabilities(outputs: Any, axis: int = -1, atol: float = 1e-3) -> bool:
    """Whether ``outputs`` already are probabilities (>= 0, summing to 1 along ``axis``), not logits."""
    p = np.asarray(outputs, np.float64)
    return bool(p.size and np.all(p >= 0) and np.allclose(p.sum(axis=axis), 1.0, atol=atol))


def as_probabilities(outputs: Any, axis: int = -1) -> np.ndarray:
    """``outputs`` as probabilities: unchanged when they already are (>= 0, summing to 1), else
    their :func:`softmax` (a model that returns logits)."""
    p = np.asarray(outputs, np.float64)
    return p if is_probabilities(p, axis) else softmax(p, axis=axis)
