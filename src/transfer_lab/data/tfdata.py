"""tf.data input pipelines over the manifest, decoding with the project's one decoder
(:func:`transfer_lab.data.imaging.load_rgb`) in parallel, batching and prefetching.

Images come out as float32 RGB in 0-255, which is what every model of the project takes.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from transfer_lab.data.imaging import load_rgb
from transfer_lab.runtime.quiet import quiet_tensorflow


def image_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    image_size: int,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    cache: bool = False,
    flip: bool = False,
    pixels: np.ndarray | None = None,
    resize: str = "squash",
):
    """A ``tf.data.Dataset`` of ``images`` or ``(images, labels)`` batches; ``flip``: of the
    left-right mirror images. ``pixels``: the photos already decoded at ``image_size``
    (:mod:`transfer_lab.data.pixels`, one uint8 row per path, memory-mapped or not): batches are
    gathered from it instead of decoding the files (``cache`` is then pointless and ignored). ``shuffle``: a new seeded order every pass; ``cache``: decoded
    images kept in memory after the first pass (and shuffled after the cache, so the order still
    changes every pass).

    tf.data autotuning is off, with fixed parallelism (one decode per CPU core) and a prefetch of
    two batches instead. With autotuning on, deleting an iterator (the end of every pass, every
    Keras epoch) waits for the autotuning thread to finish its current sleep, and those sleeps
    double from 10 ms: a 5 s pass over 200 photos took 10.3 s about one time in three.
    """
    import tensorflow as tf

    quiet_tensorflow()
    size = int(image_size)

    def _decode(path: bytes) -> np.ndarray:
        img = load_rgb(path.decode("utf-8"), size, resize=resize)
        if flip:
            img = img[:, ::-1]
        return img.astype(np.float32)

    def _load(path):
        img = tf.numpy_function(_decode, [path], tf.float32, stateful=False)
        img.set_shape((size, size, 3))
        return img

    if pixels is not None:
        return _pixel_dataset(pixels, labels, size, batch_size, shuffle, seed, repeat, drop_remainder, flip)
    workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    paths = [str(p) for p in paths]
    if labels is None:
        ds, load = tf.data.Dataset.from_tensor_slices(paths), _load
    else:
        ds = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, dtype=np.int32)))
        load = lambda p, y: (_load(p), y)  # noqa: E731
    reshuffle = lambda d: d.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)  # noqa: E731
    if shuffle and not cache:
        ds = reshuffle(ds)  # paths, before decoding: the buffer holds file names, not images
    ds = ds.map(load, num_parallel_calls=workers, deterministic=True)
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = reshuffle(ds)  # after the cache, or every epoch would replay the first one's order
    if repeat:
        ds = ds.repeat()
    return _without_autotuning(ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(2))


def _pixel_dataset(pixels, labels, size, batch_size, shuffle, seed, repeat, drop_remainder, flip):
    """Batches gathered from decoded pixels: row indices are shuffled and batched, each batch is one
    copy out of the (memory-mapped) array, then cast to float32 (and mirrored) by TensorFlow."""
    import tensorflow as tf

    if pixels.shape[1:] != (size, size, 3):
        raise ValueError(f"The decoded pixels are {pixels.shape[1:]} but the model takes {(size, size, 3)}: "
                         "the pixel cache is per size; pass pixels decoded at image_size.")
    n = len(pixels)

    def gather(idx: np.ndarray) -> np.ndarray:
        return np.asarray(pixels[idx])

    def load(idx):
        img = tf.numpy_function(gather, [idx], tf.uint8, stateful=False)
        img.set_shape((None, size, size, 3))
        img = tf.cast(img, tf.float32)
        return tf.reverse(img, axis=[2]) if flip else img

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if labels is None:
        ds = ds.map(load)
    else:
        ys = tf.constant(np.asarray(labels, dtype=np.int32))
        ds = ds.map(lambda idx: (load(idx), tf.gather(ys, idx)))
    return _without_autotuning(ds.prefetch(2))


def _without_autotuning(ds):
    """``ds`` with tf.data autotuning off (see :func:`image_dataset` for why)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def array_dataset(
    x: np.ndarray, y: np.ndarray, *, batch_size: int, shuffle: bool = False, seed: int = 0
):
    """``(dataset, steps_per_epoch)``: ``(x, y)`` batches from in-memory arrays (cached features),
    built once for the whole fit. Keras re-slices numpy input every epoch: 0.13 s an epoch
    against 0.045 s for a full-batch head on 2,800 features (2 cores).

    With ``shuffle`` the dataset repeats forever, epoch ``e`` in the order of a stateless
    permutation seeded by ``(seed, e)``: the same batches on one device and under a
    distribution strategy (which re-traces the input and loses the global seed that
    ``Dataset.shuffle`` draws on). Pass ``steps_per_epoch`` to ``fit``. Autotuning off, as in
    :func:`image_dataset`."""
    import tensorflow as tf

    n = len(x)
    steps = max(1, -(-n // int(batch_size)))
    if not shuffle:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        return _without_autotuning(ds.prefetch(1)), steps
    xs, ys = tf.constant(x), tf.constant(y)

    def epoch_order(e):
        key = tf.stack([tf.constant(int(seed), tf.int64), e])
        order = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    ds = tf.data.Dataset.range(2**62).flat_map(epoch_order).map(lambda idx: (tf.gather(xs, idx), tf.gather(ys, idx)))
    return _without_autotuning(ds.prefetch(1)), steps


def load_batch(paths: Sequence[str], image_size: int | tuple[int, int] | None, resize: str = "squash") -> np.ndarray:
    """Decode a few images eagerly into one float32 0-255 array (N, H, W, 3)."""
    return np.stack([load_rgb(p, image_size, resize=resize).astype(np.float32) for p in paths])


def balanced_class_weights(labels: Sequence[int], n_classes: int) -> dict[int, float]:
    """Keras ``class_weight`` that weighs each class by 1/frequency (mean weight 1 over the
    samples): with 112 photos of one breed and 6 of another, both count the same in the loss."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)
    return {i: float(len(y) / (n_classes * c)) for i, c in enumerate(counts) if c > 0}


def train_dataset(paths: Sequence[str], labels: np.ndarray, *, image_size: int, batch_size: int, seed: int,
                  cache: bool = True, pixels: np.ndarray | None = None, resize: str = "squash") -> Any:
    """Shuffled every epoch; with ``cache`` decoded photos are kept in memory after the first epoch;
    ``pixels``: already decoded (see :func:`image_dataset`)."""
    return image_dataset(paths, labels, image_size=image_size, batch_size=batch_size, shuffle=True, seed=seed,
                         cache=cache, pixels=pixels, resize=resize)


def eval_dataset(paths: Sequence[str], labels: np.ndarray | None, *, image_size: int, batch_size: int,
                 cache: bool = True, pixels: np.ndarray | None = None, resize: str = "squash") -> Any:
    return image_dataset(paths, labels, image_size=image_size, batch_size=batch_size, shuffle=False, cache=cache,
                         pixels=pixels, resize=resize)


