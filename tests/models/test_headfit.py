"""fit_head: the same head, history and early stop as keras.Model.fit, in one compiled call."""

from __future__ import annotations

import numpy as np
import pytest


def _data(n, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 16)).astype(np.float32)
    y = rng.integers(0, 3, n)
    return (centers[y] * 0.6 + rng.normal(size=(n, 16))).astype(np.float32), y


def _head(l2=1e-3, dropout=0.0):
    import keras

    from transfer_lab.models.backbones import build_head

    keras.utils.set_random_seed(3)
    return build_head(16, 3, dropout, l2)


@pytest.mark.parametrize("patience", [5, None])
def test_same_history_weights_and_stop_as_keras_fit(patience):
    import keras

    from transfer_lab.data.tfdata import array_dataset
    from transfer_lab.models.headfit import fit_head

    x, y = _data(300, 0)
    xv, yv = _data(80, 1)
    cw = {0: 0.5, 1: 1.0, 2: 2.0}
    epochs, lr, batch = 60, 3e-2, 128  # 3 shuffled batches an epoch

    ours = _head()
    hist = fit_head(ours, x, y, epochs=epochs, batch_size=batch, optimizer=keras.optimizers.Adam(lr),
                    loss=keras.losses.CategoricalCrossentropy(), val=(xv, yv), patience=patience,
                    class_weight=cw, seed=42)

    ref = _head()
    ref.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.CategoricalCrossentropy(),
                metrics=["accuracy"])
    train, steps = array_dataset(x, keras.utils.to_categorical(y, 3), batch_size=batch, shuffle=True, seed=42)
    val = array_dataset(xv, keras.utils.to_categorical(yv, 3), batch_size=batch)[0]
    callbacks = [] if patience is None else [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
    expected = ref.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps, class_weight=cw,
                       callbacks=callbacks, verbose=0).history

    assert len(hist["loss"]) == len(expected["loss"])
    if patience is not None:
        assert len(hist["loss"]) < epochs  # it did stop early, at the same epoch as fit
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hist[key], expected[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_without_validation_every_epoch_runs_and_the_loss_falls():
    import keras

    from transfer_lab.models.headfit import fit_head

    x, y = _data(200, 2)
    hist = fit_head(_head(dropout=0.2), x, y, epochs=25, batch_size=4096, optimizer=keras.optimizers.Adam(1e-2),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), seed=0)
    assert set(hist) == {"loss", "accuracy"} and len(hist["loss"]) == 25
    assert hist["loss"][-1] < hist["loss"][0]
