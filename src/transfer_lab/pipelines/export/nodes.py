"""export: SavedModel and TFLite (float32, int8 calibrated on training photos) of the chosen
classifier, each measured against the Keras model on the test photos."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from transfer_lab.models import export
from transfer_lab.models.choice import pick_classifier
from transfer_lab.params.export import ExportParams

log = logging.getLogger(__name__)


def _photos(paths: Any, size: int, limit: int) -> np.ndarray:
    from transfer_lab.data.imaging import ImageRejected, load_rgb

    out = []
    for p in list([] if paths is None else paths)[:limit]:
        try:
            out.append(load_rgb(str(p), size))
        except ImageRejected:
            continue
    return np.stack(out).astype(np.float32) if out else np.zeros((0, size, size, 3), np.float32)


def export_classifier(params: ExportParams, features: dict[str, np.ndarray], finetuned: Any,
                      head: Any) -> tuple[str, bytes, bytes, dict[str, Any]]:
    """(SavedModel folder, fp32 .tflite, int8 .tflite, report). The report gives, per format,
    size_bytes, top1_agreement and max_prob_diff against Keras on up to ``export.test_photos``
    test photos, and latency_ms (median single photo); keras.latency_ms beside."""
    from transfer_lab.models.predict import predict_array

    model = pick_classifier(params.model, "export.model", finetuned=finetuned, head=head)
    size = int(model.input_shape[1])
    test = _photos(features.get("test_paths"), size, params.test_photos)
    if not len(test):
        raise ValueError("export: no test photos to measure parity on (features.npz has no readable test_paths). "
                         "Run `kedro run --pipelines=data_ingestion,feature_extraction` with data.split.test above 0.")
    calib = _photos(features.get("train_paths"), size, params.calibration_photos) if params.int8 else test[:0]
    import tensorflow as tf

    reference = predict_array(model, test, batch_size=32)
    traced = tf.function(lambda x: model(x, training=False), reduce_retracing=True)  # as served, not eager
    report: dict[str, Any] = {"model": params.model, "n_test": int(len(test)), "n_calibration": int(len(calib)),
                              "keras": {"latency_ms": export.latency_ms(traced, test[0], params.latency_repeats)}}
    folder = Path(tempfile.mkdtemp(prefix="transfer_lab_saved_model_")) / "saved_model"
    export.saved_model_folder(model, folder)
    run = export.saved_model_runner(folder)
    report["saved_model"] = {"size_bytes": export.folder_bytes(folder), **export.parity(reference, run(test)),
                             "latency_ms": export.latency_ms(run, test[0], params.latency_repeats)}
    blobs = {"tflite_fp32": export.to_tflite(model)}
    if params.int8:
        blobs["tflite_int8"] = export.to_tflite(model, int8=True, calibration=calib)
    for name, blob in blobs.items():
        run = export.tflite_runner(blob)
        report[name] = {"size_bytes": len(blob), **export.parity(reference, run(test)),
                        "latency_ms": export.latency_ms(run, test[0], params.latency_repeats)}
    for name in ("saved_model", *blobs):
        r = report[name]
        log.info("export %s: %.1f MB, top-1 agreement %.4f, max prob diff %.4f, %.1f ms/photo.", name,
                 r["size_bytes"] / 1e6, r["top1_agreement"], r["max_prob_diff"], r["latency_ms"])
    return str(folder), blobs["tflite_fp32"], blobs.get("tflite_int8", b""), report
