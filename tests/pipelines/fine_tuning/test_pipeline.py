"""fine_tuning as Kedro runs it: SequentialRunner over an in-memory catalog on tiny generated
photos, and (slow) a KedroSession on a slice of the real cats and dogs (../shared) after
head_training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from transfer_lab.models.backbones import backbone_of
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.params.fine_tuning import FineTuningParams
from transfer_lab.params.head_training import HeadTrainingParams
from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.pipelines.fine_tuning import create_pipeline

from .tiny import BACKBONE, tiny_inputs


class Kept(MemoryDataset):
    """A MemoryDataset the runner does not release once later nodes have read it."""

    def _release(self) -> None:
        pass


def test_pipeline_on_an_in_memory_catalog(tmp_path, make_image):
    """From head_training's classifier to a fine-tuned one (a new model: the head's weights stay
    as they were), its history and summary, and the head-only vs fine-tuned comparison."""
    inputs = tiny_inputs(tmp_path / "photos", make_image)
    head = inputs["head_classifier@keras"]
    head_weights = [np.array(w) for w in head.weights]
    params = FineTuningParams(unfreeze=1, epochs=2, batch_size=4, augmentation=None, cache_images=False,
                              backup_dir=str(tmp_path / "backup"))
    outputs = ["finetuned_classifier@keras", "finetune_history", "finetune_summary", "finetune_metrics",
               "finetune_comparison", "finetune_comparison_table", "finetune_confusion_matrix", "finetune_curves",
               "finetune_comparison_figure"]
    catalog = DataCatalog({
        **{name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()},
        "params:fine_tuning": MemoryDataset(params),
        "params:backbone": MemoryDataset(BackboneParams.model_validate(BACKBONE)),
        "params:head_training": MemoryDataset(HeadTrainingParams(refit_on_val=False)),
        "params:runtime": MemoryDataset(RuntimeParams(strategy="none")),
        **{name: Kept(copy_mode="assign") for name in outputs},
    })
    SequentialRunner().run(create_pipeline(), catalog)

    tuned = catalog.load("finetuned_classifier@keras")
    assert tuned is not head
    for w, before in zip(head.weights, head_weights):
        np.testing.assert_array_equal(np.array(w), before)
    changed = [not np.array_equal(np.array(a), np.array(b)) for a, b in zip(tuned.weights, head.weights)]
    assert any(changed)
    assert not backbone_of(tuned).trainable  # frozen again before it is saved
    summary = catalog.load("finetune_summary")
    assert summary["epochs_run"] == 2 and summary["first_unfrozen_layer"] == "Conv_1"
    assert summary["n_train"] == 16 and summary["n_val"] == 8 and summary["augmentation"]["flip"] == "none"
    comparison = catalog.load("finetune_comparison")
    assert comparison["n_test"] == 4
    assert set(comparison["head_only"]) == {"accuracy", "mean_per_class_accuracy", "top3_accuracy", "macro_f1"}
    assert catalog.load("finetune_metrics")["accuracy"] == comparison["fine_tuned"]["accuracy"]
    assert "| accuracy |" in catalog.load("finetune_comparison_table")
    assert not (tmp_path / "backup").exists() or not any((tmp_path / "backup").iterdir())


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
    model_path, head_path = out("data/06_models/finetuned_classifier.keras"), out("data/06_models/head_classifier.keras")
    assert model_path.exists() and head_path.exists()
    assert not out("data/06_models/classifier.keras").exists()
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

    # fine_tuning leaves head_training's file as it was; a second run starts from it again
    head_bytes, first_tuned = head_path.read_bytes(), model_path.read_bytes()
    kedro_project.run("fine_tuning", {**params, "fine_tuning.epochs": 1})
    assert head_path.read_bytes() == head_bytes
    again = json.loads(out("data/08_reporting/finetune_comparison.json").read_text())
    assert again["head_only"] == comparison["head_only"]
    assert model_path.read_bytes() != first_tuned and model_path.exists()

    import keras

    tuned = keras.saving.load_model(model_path, compile=False)
    assert tuned.get_layer("logits") is not None and int(tuned.output_shape[-1]) == 2
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    probs = np.asarray(tuned(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_head_only_figures_reuse_head_trainings_report_when_it_covers_the_test_photos():
    from transfer_lab.pipelines.fine_tuning.nodes import _head_report

    per_class = {c: {"precision": 1.0, "recall": r, "f1": 0.95, "support": 5} for c, r in (("cat", 0.8), ("dog", 1.0))}
    full = {"accuracy": 0.9, "top3_accuracy": 1.0, "macro_f1": 0.9, "n_test": 10, "per_class": per_class}
    # a report of before mean_per_class_accuracy: the figure is derived from its per-class recalls
    assert _head_report(full, ["cat", "dog"], 10) == {**full, "mean_per_class_accuracy": pytest.approx(0.9)}
    assert _head_report({**full, "mean_per_class_accuracy": 0.7}, ["cat", "dog"], 10)["mean_per_class_accuracy"] == 0.7
    assert _head_report(full, ["cat", "dog"], 12) is None  # other test photos: re-measured
    assert _head_report(full, ["cat", "dog", "fox"], 10) is None
    assert _head_report({"accuracy": 0.5}, ["cat", "dog"], 10) is None
