"""The whole product on a slice of ../shared: `kedro run` of the default pipeline, each pipeline
alone from what the run left in the catalog, a clear message when an input is missing, the report,
and the notebook executed top to bottom."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _slice(shared: Path, dest: Path, per_class: int) -> Path:
    for cls in ("Cat", "Dog"):
        files = sorted((shared / "data" / "PetImages" / cls).glob("*.jpg"), key=lambda p: int(p.stem))[:per_class]
        (dest / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dest / cls / f.name)
    return dest


def small_params(shared: Path, source: Path) -> dict:
    w = shared / "weights"
    return {
        "data.source": str(source),
        "data.labels": "species",
        "backbone.weights": str(w / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"),
        "backbone.classifier_weights": str(w / "mobilenet_v2_1.0_imagenet.weights.h5"),
        "backbone.imagenet_labels": str(w / "imagenet_labels.txt"),
        "backbone.image_size": 96,
        "fine_tuning.epochs": 1,
        "fine_tuning.unfreeze": 1,
        "visualization.steps": 6,
        "visualization.second_model.weights": str(w / "mobilenet_0.25_imagenet.weights.h5"),
        "visualization.feature_maps.layers": ["last_conv"],
        "adversarial.max_images": 3,
        "adversarial.steps": 5,
        "adversarial.robustness.max_images": 6,
        "adversarial.robustness.budgets": [0, 2],
        "adversarial.transfer.weights": str(w / "mobilenet_0.25_imagenet.weights.h5"),
    }


@pytest.mark.slow
def test_default_pipeline_then_each_alone_then_notebook(shared_dir, kedro_project, tmp_path):
    source = _slice(shared_dir, tmp_path / "pets", per_class=30)
    params = small_params(shared_dir, source)
    kedro_project.run(None, params)  # `kedro run`: the default pipeline
    out = kedro_project.out
    for rel in ("data/03_primary/manifest.csv", "data/04_feature/features.npz", "data/06_models/head_classifier.keras",
                "data/06_models/finetuned_classifier.keras",
                "data/08_reporting/head_metrics.json", "data/08_reporting/finetune_metrics.json",
                "data/08_reporting/ideal_images.json", "data/08_reporting/adversarial.json",
                "data/08_reporting/report/report.md"):
        assert out(rel).exists(), rel
    head = json.loads(out("data/08_reporting/head_metrics.json").read_text())
    assert head["accuracy"] >= 0.7 and head["n_test"] >= 8
    report = out("data/08_reporting/report/report.md").read_text()
    for section in ("## 1. Data", "## 3. Head", "## 5. Ideal class images", "## 6. Adversarial examples"):
        assert section in report
    import re

    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert "ideal_images_grid.png" in links and "adversarial_robust_accuracy.png" in links
    assert "not produced" not in report
    for link in links:  # every figure the report names is there
        assert out("data/08_reporting/report").joinpath(link).is_file(), link

    # One pipeline alone, from what the run left in the catalog.
    kedro_project.run("visualization", {**params, "visualization.classes": ["dog"]})
    assert (out("data/08_reporting/ideal_images") / "dog.png").exists()

    # The notebook, top to bottom, on this run's outputs.
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "transfer_lab_run.ipynb", as_version=4)
    os.environ["TRANSFER_LAB_PROJECT"] = str(kedro_project.path)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(kedro_project.path)}}).execute()
    finally:
        os.environ.pop("TRANSFER_LAB_PROJECT", None)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 3


@pytest.mark.slow
def test_missing_input_says_what_to_run_first(kedro_project):
    from kedro.io import DatasetError

    with pytest.raises(DatasetError, match=r"kedro run --pipelines=data_ingestion"):
        kedro_project.run("feature_extraction", {"backbone.weights": "none", "backbone.image_size": 32})
