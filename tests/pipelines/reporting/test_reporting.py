"""reporting: every figure the report names is one it holds, and a missing one fails the run."""

from __future__ import annotations

import re

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from transfer_lab.io.datasets import ReportDataset
from transfer_lab.pipelines.reporting.pipeline import FIGURES, REPORTS, create_pipeline


def _inputs() -> dict:
    img = np.zeros((8, 8, 3), np.uint8) + 200
    data = {name: {} for name in REPORTS}
    data["ingestion_summary"] = {"source": "x/PetImages", "n_images": 10, "split_counts": {"train": 6}}
    data["adversarial_metrics"] = {"success_rate": 1.0, "robust_accuracy": {"0": 0.9, "2": 0.0}}
    data.update({name: img for name in FIGURES})
    data["adversarial_figures"] = {"grid": img, "robust_accuracy": img, "cat_1": img}
    data["run_timings"] = {"started": "2026-12-04T02:00:00", "total_s": 200.0,
                           "pipeline_s": {"feature_extraction": 46.25, "fine_tuning": 120.0}}
    data["audit_report"] = {"n_label_issues": 7, "n_outliers": 2}
    data["serving_model_info"] = {"model": "finetuned", "registered_model_name": "transfer-lab-PetImages-species",
                                  "version": "3", "champion": "2", "logged": True, "test_accuracy": 0.98}
    data["unfamiliar_summary"] = {"method": "knn", "threshold": 0.41, "val_flagged": 0.01}
    data["explanations_report"] = {"n_photos": 8, "method": "gradcam_blurgrad",
                                   "deletion": {"beats_random_share": 0.875}, "sanity": {"rank_correlation_mean": 0.1},
                                   "passed": {"deletion": True, "sanity": True}}
    data["export_report"] = {"model": "finetuned", "n_test": 30, "keras": {"latency_ms": 24.0},
                             "tflite_int8": {"size_bytes": 2.7e6, "top1_agreement": 0.997, "max_prob_diff": 0.67,
                                             "latency_ms": 3.3}}
    return data


def _run(data: dict, tmp_path) -> dict:
    catalog = DataCatalog({k: MemoryDataset(v) for k, v in data.items()})
    catalog["run_report"] = ReportDataset(str(tmp_path / "report"), mlflow_artifact_path=None)
    SequentialRunner().run(create_pipeline(), catalog)
    return ReportDataset(str(tmp_path / "report")).load()


def test_every_figure_the_report_links_is_in_its_folder(tmp_path):
    report = _run(_inputs(), tmp_path)
    markdown = report["report.md"]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 12 and "not produced" not in markdown
    assert set(links) == set(report) - {"report.md"}
    assert "](adversarial_robust_accuracy.png)" in markdown and "| 2 | 0 |" in markdown
    assert report["adversarial_grid.png"].shape == (8, 8, 3)
    assert "| n label issues | 7 |" in markdown and "](label_issues.png)" in markdown
    assert "models:/transfer-lab-PetImages-species@champion" in markdown and "| champion version | 2 |" in markdown
    assert "| deletion test: beats random on | 0.875 |" in markdown and "](explanations.png)" in markdown
    assert "| tflite_int8 | 2.7 | 0.997 | 0.67 | 3.3 |" in markdown


def test_a_missing_adversarial_figure_fails_naming_it(tmp_path):
    data = _inputs()
    del data["adversarial_figures"]["robust_accuracy"]
    with pytest.raises(KeyError, match=r"adversarial_figures has no 'robust_accuracy' figure"):
        _run(data, tmp_path)


def test_a_figure_file_not_written_fails_the_run(tmp_path):
    from kedro.io import DatasetError

    from transfer_lab.io.datasets import FigureDataset

    data = _inputs()
    catalog = DataCatalog({k: MemoryDataset(v) for k, v in data.items() if k != "ideal_images_grid"})
    catalog["ideal_images_grid"] = FigureDataset(str(tmp_path / "ideal_images_grid.png"))
    catalog["run_report"] = ReportDataset(str(tmp_path / "report"), mlflow_artifact_path=None)
    with pytest.raises(DatasetError, match="ideal_images_grid.png"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert not (tmp_path / "report").exists()


def test_the_report_reads_each_figure_by_the_catalog_name_its_pipeline_writes():
    """A name the report takes is written by some registered pipeline (none re-listed by path)."""
    from kedro.framework.project import configure_project, pipelines

    configure_project("transfer_lab")
    written = set().union(*(p.all_outputs() for name, p in pipelines.items() if name not in ("reporting", "__default__")))
    missing = sorted(set(REPORTS + FIGURES) - written)
    assert not missing, f"reporting reads {missing}, which no pipeline writes"


def test_the_report_shows_the_seconds_per_pipeline_and_none_without_timings(tmp_path):
    markdown = _run(_inputs(), tmp_path)["report.md"]
    assert "## Time" in markdown and "| feature_extraction | 46.2 |" in markdown and "| 200.0 |" in markdown
    data = _inputs()
    data["run_timings"] = None  # no run wrote timings yet
    data["export_report"] = None  # export not run
    markdown = _run(data, tmp_path / "again")["report.md"]
    assert "## Time" not in markdown and "## Export" not in markdown


def test_the_hook_sums_each_pipelines_nodes():
    from types import SimpleNamespace

    from transfer_lab.hooks import RunTimings

    clock = iter([0.0, 1.0, 3.0, 3.5, 10.0, 12.0])
    t = RunTimings()
    t._clock = lambda: next(clock)  # noqa: SLF001 - a fake clock
    t._t0 = t._clock()
    a = SimpleNamespace(name="a", namespace="feature_extraction")
    b = SimpleNamespace(name="b", namespace="fine_tuning.inner")
    t.start(a), t.stop(a)  # 1.0 -> 3.0
    t.start(b), t.stop(b)  # 3.5 -> 10.0
    report = t.report()
    assert report["pipeline_s"] == {"feature_extraction": 2.0, "fine_tuning": 6.5} and report["total_s"] == 12.0


def test_run_timings_is_one_entry_the_hook_writes_and_the_report_reads_lazily(tmp_path):
    from kedro.io import DatasetError

    from transfer_lab.io.datasets import LazyDataset

    spec = {"type": "transfer_lab.io.datasets.MetricsDataset", "filepath": str(tmp_path / "t.json"),
            "mlflow_artifact_path": None}
    entry = LazyDataset(spec, writable=True)
    assert not entry.load().exists()
    entry.save({"pipeline_s": {"audit": 3.5}})
    assert entry.load()() == {"pipeline_s": {"audit": 3.5}}
    with pytest.raises(DatasetError, match="read-only"):
        LazyDataset(spec).save({})
