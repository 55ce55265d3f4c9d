"""The backend-neutral gradient helper on tiny models, under whichever KERAS_BACKEND runs the tests:
analytic and finite-difference gradients, gradients of several inputs, compiled functions that
see weight changes."""

from __future__ import annotations

import numpy as np
import pytest

from transfer_lab.models import gradients
from transfer_lab.models.gradients import compiled, to_numpy, value_and_grad


def dense_model(seed: int = 0):
    import keras

    rng = np.random.default_rng(seed)
    inputs = keras.Input((5,))
    layer = keras.layers.Dense(3)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=3).astype("float32")])
    return model


def tiny_conv(seed: int = 1):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_the_backend_is_one_of_the_three():
    assert gradients.backend() in ("tensorflow", "jax", "torch")


def test_gradient_of_a_linear_score_is_its_weights():
    model = dense_model()
    kernel = model.layers[-1].get_weights()[0]

    def score(x):
        z = model(x, training=False)
        return z[:, 1], z  # per-example score: per-example gradients

    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    value, aux, grad = value_and_grad(score)(x)
    np.testing.assert_allclose(to_numpy(grad), np.tile(kernel[:, 1], (4, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(value), to_numpy(aux)[:, 1], rtol=1e-6)
    assert to_numpy(aux).shape == (4, 3)


def test_gradient_of_a_conv_net_matches_finite_differences():
    from keras import ops

    model = tiny_conv()

    def score(x, k):
        z = model(x, training=False)
        return ops.sum(ops.log_softmax(z)[:, k]), z

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float64")
    value, _, grad = value_and_grad(score)(x.astype("float32"), 1)
    grad = to_numpy(grad)
    f = lambda a: float(to_numpy(score(a.astype("float32"), 1)[0]))  # noqa: E731
    h = 1e-2
    for idx in [(0, 0, 0, 0), (0, 3, 4, 1), (1, 7, 7, 2), (1, 2, 5, 0)]:
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        fd = (f(up) - f(down)) / (2 * h)
        assert grad[idx] == pytest.approx(fd, rel=2e-2, abs=2e-4)
    assert float(to_numpy(value)) == pytest.approx(f(x), rel=1e-5)


def test_gradients_of_several_inputs_compiled():
    from keras import ops

    def fn(xs, w):
        a, b = xs
        return ops.sum(a * a * w + 3.0 * b, axis=1), a + b

    step = compiled(value_and_grad(fn))
    a = np.arange(6, dtype="float32").reshape(2, 3)
    b = np.ones((2, 3), "float32")
    value, aux, (ga, gb) = step((a, b), np.float32(2.0))
    np.testing.assert_allclose(to_numpy(ga), 4.0 * a)  # d (2 a^2) / da
    np.testing.assert_allclose(to_numpy(gb), np.full((2, 3), 3.0))
    np.testing.assert_allclose(to_numpy(value), (2 * a * a + 3 * b).sum(1))
    np.testing.assert_allclose(to_numpy(aux), a + b)


def test_a_compiled_step_sees_new_weights():
    """jax.jit gets the variables' values as arguments, tf.function reads the variables: neither
    serves the weights of the first call after they change."""
    model = dense_model()

    def score(x):
        z = model(x, training=False)
        return z[:, 0], z

    step = compiled(value_and_grad(score), variables=model.variables)
    x = np.ones((2, 5), "float32")
    _, _, g1 = step(x)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 2.0, bias])
    _, _, g2 = step(x)
    np.testing.assert_allclose(to_numpy(g2), 2.0 * to_numpy(g1), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(g2)[0], 2.0 * kernel[:, 0], rtol=1e-5)


def test_compiled_with_a_signature_takes_any_batch_size():
    from keras import ops

    model = tiny_conv()

    def top(x):
        z = model(x, training=False)
        return ops.max(z, axis=-1), z

    sig = [((None, 8, 8, 3), "float32")]
    step = compiled(value_and_grad(top), variables=model.variables, input_signature=sig)
    for n in (1, 3):
        value, z, grad = step(np.random.default_rng(n).normal(size=(n, 8, 8, 3)).astype("float32"))
        assert to_numpy(grad).shape == (n, 8, 8, 3)
        np.testing.assert_allclose(to_numpy(value), to_numpy(z).max(-1), rtol=1e-6)
