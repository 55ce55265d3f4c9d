"""Export of a tiny classifier: SavedModel and TFLite float32 agree with Keras, int8 (calibrated
on training photos) agrees on the top-1 class; sizes and latencies are reported; the datasets
write what the node returns."""

from __future__ import annotations

import numpy as np

from tests.pipelines.serving.tiny import BLUE, RED, jpeg_bytes, photo, tiny_classifier


def test_export_parity_on_a_tiny_model(tmp_path):
    from tests.pipelines.adversarial.test_pipeline import deferred
    from transfer_lab.io.export_datasets import BytesDataset, SavedModelDataset
    from transfer_lab.models import export
    from transfer_lab.params.export import ExportParams
    from transfer_lab.pipelines.export.nodes import export_classifier

    paths = []
    for i, c in enumerate([RED, BLUE] * 6):  # (green is a tie between cat and dog: 8 bits may flip it)
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(jpeg_bytes(photo(c, i)))
        paths.append(str(p))
    features = {"test_paths": np.array(paths[:8]), "train_paths": np.array(paths[4:])}
    folder, fp32, int8, report = export_classifier(ExportParams(model="head", latency_repeats=3, calibration_photos=8),
                                                   features, deferred(missing=tmp_path / "f.keras"),
                                                   deferred(tiny_classifier()))
    assert report["n_test"] == 8 and report["n_calibration"] == 8
    for name in ("saved_model", "tflite_fp32"):
        assert report[name]["top1_agreement"] == 1.0 and report[name]["max_prob_diff"] < 1e-5, report[name]
    assert report["tflite_int8"]["top1_agreement"] == 1.0 and report["tflite_int8"]["max_prob_diff"] < 0.05
    assert all(report[n]["size_bytes"] > 0 and report[n]["latency_ms"] > 0 for n in ("saved_model", "tflite_fp32",
                                                                                      "tflite_int8"))
    # the catalog datasets write the SavedModel folder and the flatbuffers; what they load still answers
    SavedModelDataset(str(tmp_path / "out" / "saved_model")).save(folder)
    BytesDataset(str(tmp_path / "out" / "fp32.tflite")).save(fp32)
    x = np.stack([photo(RED, 99, size=(32, 32))]).astype(np.float32)
    expected = np.asarray(tiny_classifier()(x))
    loaded = SavedModelDataset(str(tmp_path / "out" / "saved_model")).load()
    np.testing.assert_allclose(np.asarray(loaded.serve(x)), expected, atol=1e-5)
    run = export.tflite_runner(BytesDataset(str(tmp_path / "out" / "fp32.tflite")).load())
    np.testing.assert_allclose(run(x), expected, atol=1e-5)
