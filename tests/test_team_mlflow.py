"""The team set-up of README "Team set-up": a real PostgreSQL server in a temporary folder, `mlflow
server` on 127.0.0.1 with it as the backend store and a shared artifact root, runs that reach it
through MLFLOW_TRACKING_URI alone (checked through the REST API), two runs at the same time, and
the logged classifier served by `mlflow models serve`.

Needs the PostgreSQL server binaries (initdb, pg_ctl: the `postgresql` package; .ci/run installs
it) and the psycopg2 driver (the `dev` extra). PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.rest import free_port as _free_port, get_json, post_json


def _get(base: str, endpoint: str, **query) -> dict:
    return get_json(base, endpoint, timeout=60, **query)


def _post(base: str, path: str, body: dict) -> dict:
    return post_json(base, path, body, timeout=120)


pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PG_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in PG_DIRS:
        if (d / name).exists():
            return str(d / name)
    return None




def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited:\n{log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {seconds:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, user ``mlflow``): yields its URI."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not found: apt-get install -y postgresql (see .ci/run)")
    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary (the dev extra)")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="transfer_lab_pg_"))  # /tmp, reachable by the postgres user
    if as_root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "postgres.log"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(prefix + [initdb, "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, env=env, cwd=root)
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True, env=env, cwd=root)
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, env=env,
                       cwd=root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with the PostgreSQL backend store and a shared artifact root."""
    tmp = tmp_path_factory.mktemp("team_mlflow")
    port, log = _free_port(), tmp / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", postgres, "--artifacts-destination",
             str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/health", proc, log)
        yield base
    finally:
        _stop(proc)


TINY = {
    "backbone.name": "mobilenet_v2", "backbone.weights": "none", "backbone.image_size": 32, "backbone.alpha": 0.35,
    "head_training.epochs": 3, "head_training.batch_size": 8,
}


def _photos(root: Path, make_image, n: int = 10) -> Path:
    for cls, base in (("cat", (200, 60, 40)), ("dog", (40, 80, 200))):
        for i in range(n):
            make_image(root / cls / f"{i}.png", size=(40, 40), fmt="PNG", seed=i + (100 if cls == "dog" else 0))
    return root


def _runs(base: str) -> list[dict]:
    exps = _post(base, "/api/2.0/mlflow/experiments/search", {"max_results": 100}).get("experiments", [])
    if not exps:
        return []
    return _post(base, "/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [e["experiment_id"] for e in exps], "max_results": 100}).get("runs", [])


def _artifacts(base: str, run_id: str, path: str = "") -> set[str]:
    """Every artifact path of a run (recursive)."""
    out: set[str] = set()
    listing = _get(base, "/api/2.0/mlflow/artifacts/list", run_id=run_id, **({"path": path} if path else {}))
    for f in listing.get("files", []):
        if f["is_dir"]:
            out |= _artifacts(base, run_id, f["path"])
        else:
            out.add(f["path"])
    return out


def _check_head_training_run(base: str, run: dict) -> None:
    run_id = run["info"]["run_id"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
    assert params["head_training.epochs"] == "3" and params["runtime.used.strategy"] == "default"
    assert 0.0 <= metrics["head.test.accuracy"] <= 1.0 and "head.loss" in metrics
    arts = _artifacts(base, run_id)
    assert {"head_training/head_confusion_matrix.png", "head_training/head_training_curves.png"} <= arts, arts
    # MLflow 3 keeps logged models beside the run: the mlflow.keras classifier, READY, with its files.
    found = _post(base, "/api/2.0/mlflow/logged-models/search",
                  {"experiment_ids": [run["info"]["experiment_id"]], "max_results": 100}).get("models", [])
    models = [m["info"] for m in found if m["info"].get("source_run_id") == run_id]
    assert [m["name"] for m in models] == ["head_classifier"], models
    assert models[0]["status"] == "LOGGED_MODEL_READY"
    files = _get(base, f"/api/2.0/mlflow/logged-models/{models[0]['model_id']}/artifacts/directories")
    names = {Path(f["path"]).name for f in files.get("files", [])}
    assert {"MLmodel", "data"} <= names, names
    run["model_id"] = models[0]["model_id"]


def test_runs_land_on_the_postgres_backed_server_and_the_model_serves(team_server, kedro_project, make_image,
                                                                      tmp_path, monkeypatch):
    import keras

    from transfer_lab.data.imaging import load_rgb

    src = _photos(tmp_path / "photos", make_image)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server)  # the only setting the project needs
    before = {r["info"]["run_id"] for r in _runs(team_server)}
    kedro_project.run(["data_ingestion", "feature_extraction", "head_training"], {"data.source": str(src), **TINY})
    new = [r for r in _runs(team_server) if r["info"]["run_id"] not in before]
    assert len(new) == 1
    run = new[0]
    _check_head_training_run(team_server, run)

    # Two runs started at the same time (two processes, two project copies, two data sets) both land
    # complete. data_ingestion keeps this quick; its runs log parameters, metrics and files too.
    procs, sources = [], []
    before = {r["info"]["run_id"] for r in _runs(team_server)}
    env = {**os.environ, "MLFLOW_TRACKING_URI": team_server, "KEDRO_DISABLE_TELEMETRY": "true"}
    for i in range(2):
        p = type(kedro_project)(tmp_path / f"member{i}").path
        sources.append(_photos(tmp_path / f"member{i}_photos", make_image, n=6 + 2 * i))
        procs.append((p, subprocess.Popen(
            [str(BIN / "kedro"), "run", "--pipelines=data_ingestion", f"--params=data.source={sources[-1]}"],
            cwd=p, env=env, stdout=open(p / "run.log", "w"), stderr=subprocess.STDOUT)))
    for p, proc in procs:
        assert proc.wait(timeout=300) == 0, (p / "run.log").read_text()[-4000:]
    both = [r for r in _runs(team_server) if r["info"]["run_id"] not in before]
    assert len(both) == 2
    by_source = {}
    for r in both:
        params = {p["key"]: p["value"] for p in r["data"].get("params", [])}
        metrics = {m["key"]: m["value"] for m in r["data"].get("metrics", [])}
        assert r["info"]["status"] == "FINISHED"
        by_source[params["data.source"]] = metrics["data.n_images"]
        assert {"data/manifest.csv", "data/ingestion_summary.json"} <= _artifacts(team_server, r["info"]["run_id"])
    assert by_source == {str(sources[0]): 12, str(sources[1]): 16}

    # `mlflow models serve` answers one 0-255 RGB image with the Kedro model's probabilities.
    image = load_rgb(src / "dog" / "3.png", 32).astype("float32")
    expected = np.asarray(keras.saving.load_model(kedro_project.out("data/06_models/head_classifier.keras"),
                                                  compile=False)(image[None]))
    port, log = _free_port(), tmp_path / "serve.log"
    with open(log, "w") as fh:
        serve = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{run['model_id']}",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=fh, stderr=subprocess.STDOUT,
            # the scoring server starts `uvicorn` from PATH: the virtualenv's
            env={**os.environ, "MLFLOW_TRACKING_URI": team_server, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/ping", serve, log)
        answer = _post(f"http://127.0.0.1:{port}", "/invocations", {"inputs": image[None].tolist()})
    finally:
        _stop(serve)
    got = np.asarray(answer["predictions"], dtype=np.float32)
    assert got.shape == expected.shape == (1, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert abs(float(got.sum()) - 1.0) < 1e-5
