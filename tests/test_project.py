"""The project as a whole: pipelines registered and namespaced, Kedro-Viz builds, no noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("data_ingestion", "feature_extraction", "head_training", "evaluation", "fine_tuning",
             "visualization", "adversarial", "reporting")


def _registry():
    from kedro.framework.project import configure_project, pipelines

    configure_project("transfer_lab")
    return pipelines


def test_every_pipeline_is_a_namespaced_modular_pipeline():
    registry = _registry()
    registered = set(registry.keys())  # raises if a pipeline cannot be built
    present = [name for name in PIPELINES if name in registered]
    assert "data_ingestion" in present
    for name in present:
        namespaces = {(n.namespace or "").split(".")[0] for n in registry[name].nodes}
        assert namespaces == {name}, f"{name} nodes have namespaces {namespaces}"
    default_nodes = {n.name for n in registry["__default__"].nodes}
    for name in present:
        if name != "evaluation":
            assert {n.name for n in registry[name].nodes} <= default_nodes


def test_kedro_viz_build(kedro_project):
    """`kedro viz build` succeeds on the project (as CI checks)."""
    pytest.importorskip("kedro_viz")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run([str(kedro), "viz", "build"], cwd=kedro_project.path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    build = kedro_project.path / "build"
    assert (build / "api" / "main").exists()
    import json

    main = json.loads((build / "api" / "main").read_text())
    modular = main["modular_pipelines"]  # of the default pipeline
    assert "data_ingestion" in modular, sorted(modular)
    registry = _registry()
    shown = {p["id"] for p in main["pipelines"]}
    for name in PIPELINES:
        if name not in registry.keys():
            continue
        assert name in shown, f"{name} is not a registered pipeline in Kedro-Viz"
        own = json.loads((build / "api" / "pipelines" / name).read_text())["modular_pipelines"]
        assert name in own, f"{name} is not shown as a modular pipeline"
        if name != "evaluation":
            assert name in modular, f"{name} is not in the default pipeline's view"


def test_cli_output_has_no_library_noise():
    """A kedro command shows what was asked for, without MLflow/TensorFlow warnings or Kedro's
    note about its logging configuration (conf/logging.yml)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("KEDRO_LOGGING_CONFIG", None)
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run([str(kedro), "registry", "list"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    for name in PIPELINES:
        assert f"- {name}" in out
    for noise in ("Add type hints", "as logging configuration", "UserWarning", "FutureWarning", "WARNING"):
        assert noise not in out, f"{noise!r} in the output:\n{out[-3000:]}"
