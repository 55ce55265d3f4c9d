"""Tiny classifiers with the project's layout (input -> preprocess -> nested backbone -> pool ->
logits -> probabilities), so explanations meet the nested-backbone case in milliseconds."""

from __future__ import annotations

import keras
import numpy as np

SIZE = 32


def redness_model(size: int = SIZE) -> keras.Model:
    """Class 1 ("red") scores the mean redness (relu(R - G)) of the photo, class 0 its negative; a
    second channel (brightness) carries no weight. Pooled 4x4 inside the backbone (8x8 maps)."""
    inner_in = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv_a")
    h = conv(inner_in)
    h = keras.layers.AveragePooling2D(4, name="pool_a")(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    conv.set_weights([np.array([[[[1.0, 0.3], [-1.0, 0.3], [0.0, 0.3]]]], np.float32), np.zeros(2, np.float32)])

    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess")(inputs)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    dense = keras.layers.Dense(2, name="logits")
    logits = dense(x)
    probs = keras.layers.Activation("softmax", name="probabilities")(logits)
    dense.set_weights([np.array([[-20.0, 20.0], [0.0, 0.0]], np.float32), np.array([2.0, 0.0], np.float32)])
    return keras.Model(inputs, probs, name="redness")


def random_model(size: int = SIZE, classes: int = 3, seed: int = 0) -> keras.Model:
    """A small random conv classifier with a nested backbone (smooth activations: tanh)."""
    keras.utils.set_random_seed(seed)
    inner_in = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="tanh", name="conv_1")(inner_in)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="tanh", name="conv_2")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="tanh", name="conv_3")(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probs, name="tiny")


def grey_with_red_patch(n: int = 4, size: int = SIZE, patch: int = 8, seed: int = 0,
                        noise: float = 8.0) -> tuple[np.ndarray, list]:
    """Grey photos with mild noise and one red square at a random place; returns the images and
    each square's (row, col)."""
    rng = np.random.default_rng(seed)
    images = np.clip(128 + rng.normal(0, noise, (n, size, size, 3)), 0, 255).astype(np.float32)
    corners = []
    for i in range(n):
        r, c = (int(v) for v in rng.integers(0, size - patch, 2))
        images[i, r:r + patch, c:c + patch] = (230.0, 40.0, 40.0)
        corners.append((r, c))
    return images, corners
