"""A pipeline run against a real `mlflow server` on 127.0.0.1, checked through its REST API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.rest import free_port as _free_port, get_json, post_json


def _get(base: str, endpoint: str, **query) -> dict:
    return get_json(base, endpoint, **query)


def _post(base: str, path: str, body: dict) -> dict:
    return post_json(base, path, body)




@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp_path / "server.log").read_text()[-3000:])
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not start in 120 s")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.mark.slow
def test_pipeline_run_lands_on_the_server(mlflow_server, kedro_project, make_image, tmp_path, monkeypatch):
    src = tmp_path / "photos"
    for cls in ("cat", "dog"):
        for i in range(6):
            make_image(src / cls / f"{i}.jpg", seed=i + (40 if cls == "dog" else 0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    kedro_project.run("data_ingestion", {"data.source": str(src)})

    exp = _get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="photos-breed")
    exp_id = exp["experiment"]["experiment_id"]
    runs = _post(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
    assert len(runs) == 1
    run = runs[0]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert metrics["data.n_images"] == 12 and metrics["data.class_counts.train.cat"] >= 1
    assert params["data.source"] == str(src)
    arts = _get(mlflow_server, "/api/2.0/mlflow/artifacts/list", run_id=run["info"]["run_id"], path="data")
    assert {Path(f["path"]).name for f in arts["files"]} >= {"manifest.csv", "ingestion_summary.json"}
