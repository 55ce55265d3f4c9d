"""The attacks on tiny models: budget, whole pixels, FGSM by hand, targeted success, PNG round trip."""

from __future__ import annotations

import numpy as np
import pytest

from transfer_lab.models import attacks
from transfer_lab.models.attacks import AttackConfig, AttackError, PixelAttack

SIZE = 32


def linear_model(n_classes: int = 3, seed: int = 0):
    """0-255 in, preprocessing inside, a linear 'logits' layer: the gradient sign is known."""
    import keras

    rng = np.random.default_rng(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(n_classes, name="logits")
    z = dense(x)
    probs = keras.layers.Activation("softmax", name="probabilities")(z)
    model = keras.Model(inputs, probs)
    dense.set_weights([rng.normal(0, 0.02, (SIZE * SIZE * 3, n_classes)).astype("float32"), np.zeros(n_classes, "float32")])
    return model


def tiny_conv_model(seed: int = 1):
    """A small non-linear network under the same contract (conv, batch norm, relu, pooling)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    z = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(z))


def images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.float32)
    x[0] = 0.0  # saturated images: the box must clip at 0 and 255
    x[1] = 255.0
    return x


def test_pgd_stays_in_budget_and_whole_pixels():
    model = tiny_conv_model()
    x = images(6)
    att = PixelAttack(model)
    cfg = AttackConfig(method="pgd", epsilon=3, step_size=0.7, steps=6, random_start=True, early_stop=False, batch_size=4)
    res = att.run(x, [(1,)] * len(x), targeted=True, config=cfg)
    diff = np.abs(res.adversarial - x)
    assert diff.max() <= 3.0
    assert diff.max() > 0  # it did move
    assert np.array_equal(res.adversarial, np.rint(res.adversarial))
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 255
    # a fractional budget still never rounds past it
    res2 = att.run(x, [(1,)] * len(x), targeted=True, config=AttackConfig(epsilon=2.6, steps=3, random_start=True, early_stop=False))
    assert np.abs(res2.adversarial - x).max() <= 2.0


def test_fgsm_is_one_hand_computed_sign_step():
    import tensorflow as tf

    model = linear_model()
    x = images(4, seed=3)
    target = 2
    eps = 4.0
    z0 = model.predict(x, verbose=0)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = model.get_layer("logits").output  # noqa: F841  (the contract: a logits layer exists)
        p = model(xt)
        objective = tf.reduce_sum(tf.math.log(p[:, target]))
    g = tape.gradient(objective, xt).numpy()
    expected = np.clip(np.rint(x + eps * np.sign(g)), 0, 255)
    expected = np.clip(expected, np.maximum(x - eps, 0), np.minimum(x + eps, 255))
    res = attacks.fgsm(model, x, [(target,)] * len(x), epsilon=eps, targeted=True, early_stop=False)
    assert np.array_equal(res.adversarial, expected)
    # and the target probability went up for every image
    z1 = model.predict(res.adversarial, verbose=0)
    assert np.all(z1[:, target] > z0[:, target])


def test_targeted_success_on_an_easy_case_and_early_stop():
    model = linear_model(seed=5)
    x = images(8, seed=7)
    clean = np.argmax(model.predict(x, verbose=0), axis=1)
    target = 0
    x = x[clean != target]
    res = attacks.pgd(model, x, [(target,)] * len(x), epsilon=8, targeted=True, steps=20)
    assert res.success.all()
    pred = np.argmax(model.predict(res.adversarial, verbose=0), axis=1)
    assert np.all(pred == target)
    assert np.all(res.steps >= 1) and np.all(res.steps <= 20)
    # early stop: no image walked further than needed on a linear model (<= its step count x step)
    step = AttackConfig(epsilon=8).alpha
    assert np.all(np.abs(res.adversarial - x).reshape(len(x), -1).max(axis=1) <= res.steps * step + 0.5)
    # untargeted: the true class is left
    res_u = attacks.pgd(model, x, [(int(c),) for c in clean[clean != target]], epsilon=8, targeted=False, steps=20)
    assert res_u.success.all()


def test_png_round_trip_keeps_the_attack(tmp_path):
    from transfer_lab.data.imaging import load_rgb, save_png

    model = linear_model(seed=9)
    x = images(6, seed=11)
    clean = np.argmax(model.predict(x, verbose=0), axis=1)
    target = 1
    x = x[clean != target]
    res = attacks.pgd(model, x, [(target,)] * len(x), epsilon=2, targeted=True, steps=10)
    assert res.success.any()
    back = []
    for i, img in enumerate(res.adversarial):
        save_png(img, tmp_path / f"{i}.png")
        back.append(load_rgb(tmp_path / f"{i}.png").astype(np.float32))
    back = np.stack(back)
    assert np.array_equal(back, res.adversarial)
    pred = np.argmax(model.predict(back, verbose=0), axis=1)
    assert np.array_equal(pred == target, res.success)


def test_bad_parameters_fail_with_a_clear_message():
    with pytest.raises(AttackError, match="must be a finite number >= 0"):
        attacks.check_epsilon(-1, "adversarial.epsilon")
    with pytest.raises(AttackError, match="whole 0-255 pixel range"):
        attacks.check_epsilon(300, "adversarial.epsilon")
    with pytest.raises(AttackError, match="pass adversarial.epsilon=2"):
        attacks.check_epsilon(2 / 255, "adversarial.epsilon")
    with pytest.raises(AttackError, match="steps"):
        AttackConfig(steps=0).validated()
    with pytest.raises(AttackError, match="method"):
        AttackConfig(method="cw").validated()


def test_early_stop_refill_gives_the_batched_loops_result_per_image():
    """Early stop refills the working batch as images succeed: each image gets the result the
    batched while-loop gives it (same adversarial pixels, success, steps and logits)."""
    import tensorflow as tf

    model = tiny_conv_model()
    attack = PixelAttack(model)
    x = images(11, seed=3)
    clean = attack.predict_logits(x)
    sets = [(int(np.argmax(c)),) for c in clean]  # untargeted: leave the predicted class
    cfg = AttackConfig(method="pgd", epsilon=32, steps=6, batch_size=4).validated()
    res = attack.run(x, sets, targeted=False, config=cfg)
    mask = attacks.set_mask(sets, attack.n_classes)
    o, s, k, z = attack._batch(
        tf.constant(x), tf.constant(mask), tf.constant(False), tf.constant(32.0), tf.constant(cfg.alpha),
        tf.constant(6), tf.constant(False), tf.constant(True), tf.constant(True), tf.constant(0.0),
        tf.constant([0, 0], tf.int32))
    np.testing.assert_array_equal(res.success, s.numpy())
    np.testing.assert_array_equal(res.steps, k.numpy())
    np.testing.assert_allclose(res.adversarial, o.numpy(), atol=1e-4)
    np.testing.assert_allclose(res.adv_logits, z.numpy(), rtol=1e-4, atol=1e-4)
    assert 0 < res.success.sum() < len(x)  # images left the working batch at different steps
    assert np.abs(res.adversarial - x).max() <= 32 + 1e-4
