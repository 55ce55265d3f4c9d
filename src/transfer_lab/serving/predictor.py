"""Photo bytes -> the project's decoder -> the classifier -> label, probability, top-k, per-class
probabilities and the unfamiliar flag. One code path for the inference pipeline and the served
MLflow model (transfer_lab.serving.pyfunc), so both give the same answers."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from transfer_lab.data.imaging import DEFAULT_MAX_PIXELS, ImageRejected, _check_resize, load_rgb
from transfer_lab.models import unfamiliar

BAD_BASE64 = "bad_base64"


def b64_bytes(text: Any) -> bytes:
    """The bytes of a base64 string (a ``data:image/...;base64,`` prefix is allowed), or
    :class:`ImageRejected` (reason ``bad_base64``) naming what is wrong."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("ascii", errors="replace")
    if not isinstance(text, str):
        raise ImageRejected(BAD_BASE64, f"expected a base64 string, got {type(text).__name__}")
    text = text.strip()
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]
    if not text:
        raise ImageRejected(BAD_BASE64, "the string is empty")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRejected(BAD_BASE64, f"not valid base64 ({exc})") from None


def pool_model(classifier: Any) -> Any:
    """The classifier's pooled backbone features (its ``pool`` layer: models.backbones.build_classifier)."""
    import keras

    return keras.Model(classifier.inputs, classifier.get_layer("pool").output)


class Predictor:
    """``classifier`` (0-255 RGB in, probabilities out) and the unfamiliar statistics fitted on
    the pooled features of ``feature_model`` (default: the classifier's own ``pool`` layer; give
    head_training's classifier for a fine-tuned one, whose features have moved). ``resize``: how a
    photo becomes the square input, as the classifier was trained (classifier_config.json's ``resize``)."""

    def __init__(self, classifier: Any, stats: Mapping[str, np.ndarray], class_names: Sequence[str], *,
                 feature_model: Any = None, max_pixels: int | None = None, top_k: int = 3, batch_size: int = 32,
                 resize: str = "squash"):
        import keras
        import tensorflow as tf

        self.class_names = [str(c) for c in class_names]
        if int(classifier.output_shape[-1]) != len(self.class_names):
            raise ValueError(f"the classifier has {classifier.output_shape[-1]} outputs but {len(self.class_names)} "
                             "class names are given: they come from different runs. Re-run head_training.")
        self.size = int(classifier.input_shape[1])
        self.resize = _check_resize(resize)
        self.stats = dict(stats)
        self.max_pixels = int(max_pixels or DEFAULT_MAX_PIXELS)
        self.top_k = max(1, min(int(top_k), len(self.class_names)))
        self.batch_size = int(batch_size)
        if feature_model is None:
            joint = keras.Model(classifier.inputs, [classifier.outputs[0], classifier.get_layer("pool").output])
            self._forward = tf.function(lambda x: joint(x, training=False), reduce_retracing=True)
        else:
            both = (lambda x: (classifier(x, training=False), feature_model(x, training=False)))
            self._forward = tf.function(both, reduce_retracing=True)

    def decode(self, data: bytes) -> np.ndarray:
        """(size, size, 3) uint8 through the project's decoder, or :class:`ImageRejected`."""
        return load_rgb(bytes(data), self.size, resize=self.resize, max_pixels=self.max_pixels)

    def predict_arrays(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, unfamiliar flags, unfamiliar scores) for decoded images."""
        n = len(images)
        probs = np.zeros((n, len(self.class_names)), np.float32)
        feats = None
        for s in range(0, n, self.batch_size):
            p, f = self._forward(np.asarray(images[s:s + self.batch_size], np.float32))
            probs[s:s + len(p)] = np.asarray(p)
            f = np.asarray(f, np.float32)
            if feats is None:
                feats = np.zeros((n, f.shape[1]), np.float32)
            feats[s:s + len(f)] = f
        if n == 0:
            return probs, np.zeros(0, bool), np.zeros(0)
        flags, scores = unfamiliar.flag(self.stats, feats)
        return probs, flags, scores

    def records(self, probs: np.ndarray, flags: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        """One answer per image: label, probability, unfamiliar, unfamiliar_score, top_k, probabilities."""
        out = []
        for p, u, s in zip(probs, flags, scores):
            order = np.argsort(-p, kind="stable")[: self.top_k]
            out.append({
                "label": self.class_names[int(order[0])],
                "probability": float(p[order[0]]),
                "unfamiliar": bool(u),
                "unfamiliar_score": float(s),
                "top_k": [{"label": self.class_names[int(i)], "probability": float(p[i])} for i in order],
                "probabilities": {c: float(v) for c, v in zip(self.class_names, p)},
            })
        return out

    def predict_bytes(self, images: Iterable[bytes]) -> list[dict[str, Any]]:
        """Answers for image file bytes; the first one that does not decode raises
        :class:`ImageRejected` (its ``index`` attribute says which)."""
        arrays = []
        for i, data in enumerate(images):
            try:
                arrays.append(self.decode(data))
            except ImageRejected as exc:
                exc.index = i
                raise
        stack = np.stack(arrays) if arrays else np.zeros((0, self.size, self.size, 3), np.uint8)
        return self.records(*self.predict_arrays(stack))
