"""fine_tuning through Kedro on a slice of the real cats and dogs (../shared), after head_training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transfer_lab.models.training import FineTuneError  # noqa: F401


@pytest.mark.slow
def test_fine_tuning_on_real_photos(kedro_project, shared_dir, mobilenet_v2_no_top, tmp_path):
    src = shared_dir / "data" / "PetImages"
    data = tmp_path / "PetImages"
    for cls in ("Cat", "Dog"):
        (data / cls).mkdir(parents=True)
        for p in sorted((src / cls).glob("*.jpg"))[:40]:
            shutil.copy(p, data / cls / p.name)
    params = {
        "data.source": str(data), "data.labels": "species",
        "backbone.weights": str(mobilenet_v2_no_top), "backbone.image_size": 96,
        "fine_tuning.epochs": 2, "fine_tuning.batch_size": 16, "fine_tuning.learning_rate": 1e-4,
    }
    kedro_project.run(["data_ingestion", "feature_extraction", "head_training", "fine_tuning"], params)

    out = kedro_project.out
    model_path, head_path = out("data/06_models/classifier.keras"), out("data/06_models/head_classifier.keras")
    assert model_path.exists() and head_path.exists() and not head_path.exists()
    head_metrics = json.loads(out("data/08_reporting/head_metrics.json").read_text())
    metrics = json.loads(out("data/08_reporting/finetune_metrics.json").read_text())
    comparison = json.loads(out("data/08_reporting/finetune_comparison.json").read_text())
    # the same test report as head_training (transfer_lab.reports.metrics), plus what fine-tuning did
    for key in ("accuracy", "top3_accuracy", "macro_f1", "per_class", "confusion_matrix"):
        assert key in head_metrics and key in metrics
    s = metrics["fine_tuning"]
    assert s["first_unfrozen_layer"] == "block_15_expand" and s["batchnorm_frozen"] > 0
    assert s["epochs_run"] == 2 and s["resumed_from_epoch"] == 0
    n = comparison["n_test"]
    assert n == metrics["n"] >= 10
    # head-only figure re-measured on the same test photos as head_training's own report
    assert abs(comparison["head_only"]["accuracy"] - head_metrics["accuracy"]) <= 1.0 / n + 1e-9
    # fine-tuning must not wreck the model (it would with BatchNorm in training mode: ~0.5)
    assert metrics["accuracy"] == comparison["fine_tuned"]["accuracy"]
    assert comparison["fine_tuned"]["accuracy"] >= comparison["head_only"]["accuracy"] - 1.0 / n
    history = json.loads(out("data/08_reporting/finetune_history.json").read_text())
    assert len(history["val_loss"]) == 2 and history["learning_rate"][0] == pytest.approx(1e-4)
    assert max(history["val_accuracy"]) >= 0.9
    for name in ("finetune_curves.png", "finetune_confusion_matrix.png", "finetune_comparison.png",
                 "finetune_comparison.md"):
        assert out(f"data/08_reporting/{name}").stat().st_size > 0
    assert "| accuracy |" in out("data/08_reporting/finetune_comparison.md").read_text()
    assert not any(out("data/06_models/finetune_backup").glob("*/keras"))  # backup removed once done

    # a second run starts from the head-only model again, not from the fine-tuned one
    first_tuned = model_path.read_bytes()
    kedro_project.run("fine_tuning", {**params, "fine_tuning.epochs": 1})
    again = json.loads(out("data/08_reporting/finetune_comparison.json").read_text())
    assert again["head_only"] == comparison["head_only"]
    assert model_path.read_bytes() != first_tuned and model_path.exists()

    import keras

    tuned = keras.saving.load_model(model_path, compile=False)
    assert tuned.get_layer("logits") is not None and int(tuned.output_shape[-1]) == 2
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    probs = np.asarray(tuned(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
