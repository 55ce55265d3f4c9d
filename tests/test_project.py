"""The project as a whole: pipelines registered and namespaced, Kedro-Viz builds, no noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("data_ingestion", "feature_extraction", "audit", "head_training", "evaluation", "fine_tuning",
             "serving", "inference", "export", "explain", "visualization", "adversarial", "reporting")


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
        if name not in ("evaluation", "inference", "export"):  # run on their own
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
        if name not in ("evaluation", "inference", "export"):  # run on their own
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


def _catalog_config() -> dict:
    from kedro.config import OmegaConfigLoader

    from transfer_lab.settings import CONFIG_LOADER_ARGS

    return dict(OmegaConfigLoader(conf_source=str(ROOT / "conf"), **CONFIG_LOADER_ARGS)["catalog"])


def _filepaths(entry: dict) -> list[str]:
    """Every filepath an entry writes or reads (wrapped datasets included)."""
    out = [str(entry["filepath"])] if "filepath" in entry else []
    inner = entry.get("dataset")
    if isinstance(inner, dict):
        out += _filepaths(inner)
    return out


def test_one_catalog_name_per_file():
    """Two entries share a file only as transcoded views of one name (name@a, name@b)."""
    owners: dict[str, set[str]] = {}
    for name, entry in _catalog_config().items():
        if isinstance(entry, dict):
            for path in _filepaths(entry):
                owners.setdefault(os.path.normpath(path), set()).add(name.split("@")[0])
    shared = {path: sorted(names) for path, names in owners.items() if len(names) > 1}
    assert not shared, f"files with several catalog names: {shared}"


def test_every_catalog_name_is_written_by_at_most_one_node():
    registry = _registry()
    writers: dict[str, set[str]] = {}
    for name in registry.keys():
        for node in registry[name].nodes:
            for out in node.outputs:
                writers.setdefault(out.split("@")[0], set()).add(node.name)
    several = {out: sorted(nodes) for out, nodes in writers.items() if len(nodes) > 1}
    assert not several, f"outputs written by several nodes: {several}"


def test_every_parameter_section_has_its_model():
    """Each top-level section of conf/base/parameters_*.yml is a model in transfer_lab.params.SECTIONS."""
    from kedro.config import OmegaConfigLoader

    from transfer_lab.params import SECTIONS
    from transfer_lab.settings import CONFIG_LOADER_ARGS

    conf = OmegaConfigLoader(conf_source=str(ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    assert sorted(set(conf) - set(SECTIONS)) == []


def test_misspelt_params_section_refused_by_kedro_run():
    """`kedro run --params "head_trainin.l2=0.5"` stops before any node, naming the key and the fix."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run([str(kedro), "run", "--pipelines=data_ingestion", "--params", "head_trainin.l2=0.5"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = " ".join((result.stdout + result.stderr).replace("│", " ").split())  # rich wraps long lines
    assert result.returncode != 0
    assert "head_trainin is not a parameter" in out and "Did you mean head_training?" in out, out[-3000:]
    assert "Running node" not in out
