"""A tiny cat/dog classifier under the project's contract (0-255 RGB in, probabilities out, a
``pool`` layer of features and a ``logits`` head): its features are the mean R, G, B, and it says
cat for red photos, dog for blue ones. Its unfamiliar statistics are fitted on red and blue
photos, so a green one is unfamiliar."""

from __future__ import annotations

import base64
import io

import numpy as np

CLASSES = ["cat", "dog"]
RED, BLUE, GREEN = (200, 40, 40), (40, 40, 200), (40, 200, 40)


def tiny_classifier(size: int = 32):
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(2, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probabilities", dtype="float32")(logits)
    model = keras.Model(inputs, probs, name="tiny_classifier")
    # logit(cat) = 8 (r - b), logit(dog) = 8 (b - r)
    model.get_layer("logits").set_weights([np.array([[8.0, -8.0], [0.0, 0.0], [-8.0, 8.0]], np.float32),
                                           np.zeros(2, np.float32)])
    return model


def photo(color, seed: int = 0, size=(48, 40), noise: float = 25.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.asarray(color, np.float32) + rng.normal(0, noise, (size[1], size[0], 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def features_of(colors_seeds) -> np.ndarray:
    """What the tiny classifier's pool layer gives: mean RGB / 255."""
    return np.stack([photo(c, s).reshape(-1, 3).mean(0) / 255.0 for c, s in colors_seeds]).astype(np.float32)


def tiny_stats(method: str = "knn", **kw):
    from transfer_lab.models import unfamiliar

    train = [(RED, i) for i in range(20)] + [(BLUE, 100 + i) for i in range(20)]
    val = [(RED, 200 + i) for i in range(10)] + [(BLUE, 300 + i) for i in range(10)]
    y = np.array([0] * 20 + [1] * 20)
    model = tiny_classifier()
    return unfamiliar.fit(features_of(train), y, features_of(val), method=method, max_flagged=0.05,
                          head=unfamiliar.head_weights(model), **kw)


def write_artifacts(tmp_path, method: str = "knn", max_pixels: int = 89_478_485) -> dict[str, str]:
    import json

    tmp_path.mkdir(parents=True, exist_ok=True)
    tiny_classifier().save(tmp_path / "classifier.keras")
    np.savez(tmp_path / "unfamiliar.npz", **tiny_stats(method))
    (tmp_path / "config.json").write_text(json.dumps({"class_names": CLASSES, "max_pixels": max_pixels, "top_k": 2}))
    return {"classifier": str(tmp_path / "classifier.keras"), "unfamiliar": str(tmp_path / "unfamiliar.npz"),
            "config": str(tmp_path / "config.json")}
