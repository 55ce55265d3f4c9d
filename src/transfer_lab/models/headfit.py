"""Train a small head on cached features in one compiled call, epochs and early stopping included.

A head on 2,000 pooled features is a linear probe: an epoch is one or two steps of microseconds,
and ``keras.Model.fit`` spends its time around them (an epoch loop in Python, callbacks, a
validation pass set up every epoch): about 0.05 s an epoch, 50 s for the 1,000 epochs that early
stopping may allow. Here the whole run is one ``tf.function``: a ``tf.while_loop`` over epochs, each
shuffled into the same batches ``fit`` would cut (a stateless permutation per epoch), with Keras's
optimizer, loss and regularisation; the validation loss after each epoch; and early stopping as
``keras.callbacks.EarlyStopping(monitor="val_loss", patience=..., restore_best_weights=True)`` does
it, inside the loop. Returns the same history keys as ``fit`` (loss, accuracy, val_loss,
val_accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_head(
    head: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    optimizer: Any,
    loss: Any,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int | None = None,
    class_weight: dict[int, float] | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Train ``head`` (features in, probabilities out) on ``x`` and integer labels ``y``.

    With ``val`` and ``patience`` training stops once the validation loss has not improved for
    ``patience`` epochs and the best epoch's weights are restored. ``class_weight`` weighs each
    sample by its class, as ``fit`` does."""
    import tensorflow as tf

    n_classes = int(head.output_shape[-1])
    n = len(x)
    batch = max(1, min(int(batch_size), n))
    steps = -(-n // batch)
    xs = tf.constant(np.asarray(x, np.float32))
    ys = tf.one_hot(tf.constant(np.asarray(y, np.int64)), n_classes)
    cw = np.ones(n_classes, np.float32)
    for k, w in (class_weight or {}).items():
        cw[int(k)] = float(w)
    weights = tf.gather(tf.constant(cw), tf.constant(np.asarray(y, np.int64)))
    has_val = val is not None and len(val[0]) > 0
    if has_val:
        xv = tf.constant(np.asarray(val[0], np.float32))
        yv = tf.one_hot(tf.constant(np.asarray(val[1], np.int64)), n_classes)
    watch = int(patience) if (has_val and patience is not None) else int(epochs) + 1
    variables = head.trainable_variables
    optimizer.build(variables)
    best_vars = [tf.Variable(v, trainable=False) for v in variables]

    def accuracy(y_true, probs):
        return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(y_true, -1), tf.argmax(probs, -1)), tf.float32))

    def evaluate():
        probs = head(xv, training=False)
        return loss(yv, probs) + tf.add_n([tf.constant(0.0)] + [tf.cast(r, tf.float32) for r in head.losses]), \
            accuracy(yv, probs)

    def one_epoch(epoch):
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch])))
        total = tf.constant(0.0)
        correct = tf.constant(0.0)
        for b in tf.range(steps):
            idx = order[b * batch:(b + 1) * batch]
            xb, yb, wb = tf.gather(xs, idx), tf.gather(ys, idx), tf.gather(weights, idx)
            with tf.GradientTape() as tape:
                probs = head(xb, training=True)
                value = loss(yb, probs, sample_weight=wb)
                value += tf.add_n([tf.constant(0.0)] + [tf.cast(r, tf.float32) for r in head.losses])
            optimizer.apply(tape.gradient(value, variables), variables)
            m = tf.cast(tf.shape(idx)[0], tf.float32)
            total += value * m
            correct += accuracy(yb, probs) * m
        return total / n, correct / n

    @tf.function  # not XLA: slower here, and its stateless shuffle differs from fit's
    def run():
        hist = [tf.TensorArray(tf.float32, size=int(epochs)) for _ in range(4)]  # static: XLA
        best = tf.constant(np.inf, tf.float32)
        wait = tf.constant(0)
        epoch = tf.constant(0, tf.int64)
        while epoch < epochs and wait < watch:
            train_loss, train_acc = one_epoch(epoch)
            if has_val:
                val_loss, val_acc = evaluate()
            else:
                val_loss, val_acc = tf.constant(np.nan, tf.float32), tf.constant(np.nan, tf.float32)
            i = tf.cast(epoch, tf.int32)
            hist = [h.write(i, v) for h, v in zip(hist, (train_loss, train_acc, val_loss, val_acc))]
            if has_val and val_loss < best:
                best = val_loss
                wait = tf.constant(0)
                for keep, v in zip(best_vars, variables):
                    keep.assign(v)
            else:
                wait += 1
            epoch += 1
        if has_val and patience is not None and tf.math.is_finite(best):
            for keep, v in zip(best_vars, variables):
                v.assign(keep)
        return [h.stack() for h in hist], epoch

    stacked, ran = run()
    loss_h, acc_h, val_loss_h, val_acc_h = (np.asarray(t)[:int(ran)].astype(float).tolist() for t in stacked)
    history = {"loss": loss_h, "accuracy": acc_h}
    if has_val:
        history |= {"val_loss": val_loss_h, "val_accuracy": val_acc_h}
    return history
