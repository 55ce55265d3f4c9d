"""Export a classifier (0-255 RGB in, probabilities out) as a TensorFlow SavedModel and TFLite
(float32, and int8 calibrated on training photos, float input and output kept), and measure each
against the Keras model: top-1 agreement and the largest probability difference on the test
photos, file size, single-photo latency."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np


def saved_model_folder(model: Any, folder: str | Path) -> Path:
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return Path(folder)


def to_tflite(model: Any, *, int8: bool = False, calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """The model as a TFLite flatbuffer; ``int8``: weights and activations in 8 bits, ranges
    calibrated on ``calibration`` (single 0-255 photos), float32 in and out."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="transfer_lab_export_") as tmp:
        saved_model_folder(model, Path(tmp) / "sm")
        conv = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "sm"))
        if int8:
            photos = [np.asarray(x, np.float32)[None] for x in ([] if calibration is None else calibration)]
            if not photos:
                raise ValueError("int8 export needs calibration photos (export.calibration_photos >= 1).")
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([p] for p in photos)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv.convert()


def tflite_runner(blob: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """One-photo-at-a-time TFLite inference: (N, H, W, 3) -> (N, classes)."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        it = tf.lite.Interpreter(model_content=bytes(blob), num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    it.allocate_tensors()

    def run(x: np.ndarray) -> np.ndarray:
        res = []
        for xi in np.asarray(x, np.float32):
            it.set_tensor(inp["index"], xi[None])
            it.invoke()
            res.append(np.array(it.get_tensor(out["index"])[0]))
        return np.stack(res) if res else np.zeros((0, int(out["shape"][-1])), np.float32)

    return run


def saved_model_runner(folder: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    return lambda x: np.asarray(loaded.serve(tf.constant(np.asarray(x, np.float32))))


def latency_ms(run: Callable[[np.ndarray], Any], photo: np.ndarray, repeats: int = 20) -> float:
    """Median wall time of one photo (after two warm-up runs), in milliseconds."""
    x = np.asarray(photo, np.float32)[None]
    for _ in range(2):
        run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t) * 1000)
    return float(statistics.median(times))


def parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Top-1 agreement, the largest and the mean absolute probability difference."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    diff = np.abs(reference - other)
    return {"top1_agreement": float(np.mean(reference.argmax(1) == other.argmax(1))),
            "max_prob_diff": float(diff.max()) if diff.size else 0.0,
            "mean_prob_diff": float(diff.mean()) if diff.size else 0.0}


def folder_bytes(path: str | Path) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
