"""The registered serving model served by `mlflow models serve` on 127.0.0.1: real JPEG bytes get
the right label, a corrupt body and a non-image get HTTP 400 naming the problem in the first line
of the message at once, and the server keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.pipelines.serving.tiny import BLUE, GREEN, RED, b64, jpeg_bytes, photo, tiny_classifier, tiny_stats
from tests.rest import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _post(base: str, body: dict) -> tuple[int, dict, float]:
    req = urllib.request.Request(f"{base}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    start = time.time()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read()), time.time() - start
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), time.time() - start


def test_served_champion_answers_photo_bytes_and_refuses_bad_ones(tmp_path, shared_dir):
    import mlflow

    from transfer_lab.serving import pyfunc

    uri = f"sqlite:///{tmp_path / 'serve.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.MlflowClient().create_experiment("PetImages-species")
        name = pyfunc.registered_name("PetImages-species")
        with mlflow.start_run(experiment_id=exp):
            info = pyfunc.log_model(tiny_classifier(), tiny_stats(), {"class_names": ["cat", "dog"], "top_k": 2,
                                                                      "max_pixels": 4_000_000},
                                    registered_model_name=name, test_metrics={"accuracy": 0.9})
    finally:
        mlflow.set_tracking_uri(None)
    assert info["champion"] == info["version"] == "1"

    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion",
                                 "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "1"], stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        real = (shared_dir / "data" / "PetImages" / "Cat" / "1.jpg").read_bytes()  # a real JPEG file
        status, body, _ = _post(base, {"dataframe_records": [{"image": b64(jpeg_bytes(photo(RED, 5)))},
                                                             {"image": b64(jpeg_bytes(photo(BLUE, 6)))},
                                                             {"image": b64(jpeg_bytes(photo(GREEN, 7)))},
                                                             {"image": b64(real)}]})
        assert status == 200, body
        preds = body["predictions"]
        assert [p["label"] for p in preds[:2]] == ["cat", "dog"] and len(preds) == 4
        assert [p["unfamiliar"] for p in preds[:3]] == [False, False, True]
        assert set(preds[3]["probabilities"]) == {"cat", "dog"} and 0.5 <= preds[3]["probability"] <= 1.0

        corrupt = bytearray(real)
        corrupt[len(corrupt) // 3:] = b"\x00" * (len(corrupt) - len(corrupt) // 3)
        bad = [(b64(real[:400]), "Record 0 (`image`): "),  # a JPEG cut short
               (b64(b"<html><body>502 Bad Gateway</body></html>"), "Record 0 (`image`): not_an_image"),
               ("this is not base64!", "Record 0 (`image`): bad_base64"),
               (b64(jpeg_bytes(photo(RED, 1, size=(2500, 2000)))), "Record 0 (`image`): too_large")]
        for value, first in bad:
            status, body, seconds = _post(base, {"dataframe_records": [{"image": value}]})
            assert status == 400, body
            assert body["message"].splitlines()[0].startswith(first), body["message"][:300]
            assert seconds < 1.0, (first, seconds)
        status, body, _ = _post(base, {"dataframe_records": [{"image": b64(jpeg_bytes(photo(BLUE, 9)))}]})
        assert status == 200 and body["predictions"][0]["label"] == "dog"  # still serving
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
