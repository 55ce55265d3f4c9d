"""transfer_lab.runtime.strategy: runtime parameters, chief detection, chief-only writes, a head trained
with MirroredStrategy over two logical CPU devices (same result as one device), and fine_tuning
run by two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy.

Logical devices and multi-worker strategies can only be set up at the start of a process, so those
tests run in fresh subprocesses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.runtime import strategy as distribute
from transfer_lab.runtime.strategy import DistributeError, choose_precision, choose_strategy, is_chief

from .pipelines.fine_tuning.tiny import write_tiny_inputs

ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).with_name("kedro")


def _cluster(index: int, kind: str = "worker", chief: bool = False) -> str:
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


# ---------------------------------------------------------------------------------------------
# Parameters and chief detection (no TensorFlow)
# ---------------------------------------------------------------------------------------------


def test_runtime_parameters_parse_and_fail_with_the_parameter_name():
    cfg = RuntimeParams.model_validate({"strategy": "Mirrored", "mixed_precision": True, "jit_compile": "false",
                                        "cpu_devices": 2})
    assert (cfg.strategy, cfg.mixed_precision, cfg.jit_compile, cfg.cpu_devices) == ("mirrored", "on", False, 2)
    assert RuntimeParams.model_validate({}) == RuntimeParams()
    assert RuntimeParams(strategy="one-device").strategy == RuntimeParams(strategy="default").strategy == "none"
    assert RuntimeParams(mixed_precision=None, jit_compile=None) == RuntimeParams()
    conf = __import__("yaml").safe_load((ROOT / "conf" / "base" / "parameters_runtime.yml").read_text())["runtime"]
    assert RuntimeParams.model_validate(conf) == RuntimeParams() and RuntimeParams().model_dump() == conf
    for bad, message in (({"strategy": "tpu"}, "runtime.strategy=tpu is not valid: .*mirrored"),
                         ({"mixed_precision": "half"}, "runtime.mixed_precision=half is not valid"),
                         ({"jit_compile": "maybe"}, "runtime.jit_compile=maybe is not valid: use auto, true or false"),
                         ({"cpu_devices": 0}, "runtime.cpu_devices=0 is not valid"),
                         ({"cpu_devices": True}, "runtime.cpu_devices=true must be a whole number"),
                         ({"stratgy": "auto"}, "runtime.stratgy is not a parameter. Did you mean runtime.strategy?")):
        with pytest.raises(ValidationError, match=message):
            RuntimeParams.model_validate(bad)
    with pytest.raises(ValidationError, match="runtime.strategy=tpu"):  # a mapping given to setup_runtime
        distribute.setup_runtime({"strategy": "tpu"})


def test_strategy_and_precision_choices():
    assert choose_strategy("auto", n_gpus=0, n_tasks=1) == "default"
    assert choose_strategy("auto", n_gpus=2, n_tasks=1) == "mirrored"
    assert choose_strategy("auto", n_gpus=1, n_tasks=3) == "multi_worker"
    assert choose_strategy("none", n_gpus=4, n_tasks=1) == "default"
    assert choose_precision("auto", []) == "float32"  # CPU
    assert choose_precision("auto", [(6, 1)]) == "float32"  # Pascal: no tensor cores
    assert choose_precision("auto", [(8, 0), (9, 0)]) == "mixed_float16"
    assert choose_precision("on", []) == "mixed_float16"
    assert choose_precision("off", [(9, 0)]) == "float32"


def test_chief_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief() and distribute.cluster_size() == 1
    monkeypatch.setenv("TF_CONFIG", _cluster(0))
    assert is_chief() and distribute.cluster_size() == 2
    monkeypatch.setenv("TF_CONFIG", _cluster(1))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", _cluster(0, chief=True))  # with a chief task, worker 0 is not it
    assert not is_chief() and distribute.cluster_size() == 3
    monkeypatch.setenv("TF_CONFIG", _cluster(0, kind="chief", chief=True))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(DistributeError, match="TF_CONFIG"):
        is_chief()


def test_non_chief_workers_write_no_files_and_log_nothing(tmp_path, monkeypatch):
    import mlflow

    from transfer_lab.io import tracking
    from transfer_lab.io.datasets import FigureDataset, JSONDataset, MetricsDataset

    monkeypatch.setenv("TF_CONFIG", _cluster(1))
    with mlflow.start_run() as run:
        assert not tracking.active()
        JSONDataset(str(tmp_path / "a.json")).save({"a": 1})
        MetricsDataset(str(tmp_path / "m.json")).save({"acc": 0.5})
        FigureDataset(str(tmp_path / "f.png")).save(np.zeros((4, 4, 3), np.uint8))
        tracking.log_metrics({"x": 1.0})
        assert list(tmp_path.iterdir()) == []
        monkeypatch.setenv("TF_CONFIG", _cluster(0))  # worker 0 is the chief
        assert tracking.active()
        MetricsDataset(str(tmp_path / "m.json")).save({"acc": 0.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.5}
    data = mlflow.get_run(run.info.run_id).data
    assert data.metrics == {"acc": 0.5}


def test_global_batch_and_runtime_description():
    rt = distribute.setup_runtime(RuntimeParams(strategy="none"))
    assert rt.strategy_name == "default" and rt.replicas == 1 and rt.chief
    assert rt.global_batch(16) == 16
    d = rt.describe()
    assert d["precision"] == "float32" and d["strategy"] == "default" and "CPU" in d["device"]
    assert rt.on_gpu is False and rt.devices  # this machine: CPU devices only
    assert distribute.setup_runtime({"strategy": "none"}) is rt  # one runtime per process, a mapping or the model


# ---------------------------------------------------------------------------------------------
# Two logical CPU devices: MirroredStrategy gives the single-device result
# ---------------------------------------------------------------------------------------------

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    from transfer_lab.runtime import strategy as distribute
    from transfer_lab.params.head_training import HeadTrainingParams
    from transfer_lab.params.runtime import RuntimeParams
    from transfer_lab.pipelines.head_training.nodes import train_head

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 16))
    def make(n):
        y = np.arange(n) % 3
        return (centers[y] + rng.normal(0, 1.0, (n, 16))).astype("float32"), y.astype("int32")
    (xtr, ytr), (xva, yva), (xte, yte) = make(64), make(16), make(16)
    features = {"class_names": np.array(["a", "b", "c"]), "train_features": xtr, "train_labels": ytr,
                "val_features": xva, "val_labels": yva, "test_features": xte, "test_labels": yte}
    # dropout 0: dropout masks are drawn per replica, so they could not match
    out = {}
    # one device, batch 16 | two replicas of 8 each: the same global batch of 16
    for name, strategy, per_replica in (("one", "none", 16), ("two", "mirrored", 8)):
        params = HeadTrainingParams(dropout=0.0, epochs=3, batch_size=per_replica, patience=100, seed=1)
        head, hist = train_head(features, params, RuntimeParams(strategy=strategy, cpu_devices=2))
        rt = distribute.current()
        out[name] = {"replicas": rt.replicas, "strategy": rt.strategy_name, "loss": hist["loss"],
                     "weights": [np.asarray(w).tolist() for w in head.get_weights()],
                     "probs": np.asarray(head.predict(xte, verbose=0)).tolist()}
    # Feature extraction: batches split over the two devices give the one-device features, in order.
    import sys
    from PIL import Image
    from transfer_lab.models.backbones import build_feature_extractor
    from transfer_lab.params.backbone import BackboneParams
    from transfer_lab.pipelines.feature_extraction.nodes import run_extractor
    paths = []
    for i in range(7):  # 7 photos, global batch 4: the last batch is partial
        p = f"{sys.argv[1]}/{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    rt = distribute.setup_runtime({"strategy": "none", "cpu_devices": 2})
    ext = build_feature_extractor(BackboneParams.model_validate({"weights": "none", "image_size": 32, "alpha": 0.35}))
    one = run_extractor(ext, paths, 32, 4)
    rt = distribute.setup_runtime({"strategy": "mirrored", "cpu_devices": 2})
    two = run_extractor(rt.replicate(ext), paths, 32, rt.global_batch(2))
    out["features"] = {"one": one.tolist(), "two": two.tolist(), "replicas": rt.replicas}
    print("RESULT" + json.dumps(out))
    """
)


def _run_script(script: str, tmp_path: Path, timeout: int = 240, env: dict | None = None) -> str:
    path = tmp_path / "script.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path), str(tmp_path)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_mirrored_head_and_features_on_two_logical_cpus_match_one_device(tmp_path):
    out = _run_script(MIRRORED_SCRIPT, tmp_path)
    result = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT"))[6:])
    one, two = result["one"], result["two"]
    assert (one["strategy"], one["replicas"]) == ("default", 1)
    assert (two["strategy"], two["replicas"]) == ("mirrored", 2)
    # Stated tolerance: float32 sums in another order (per-replica gradients, then all-reduce).
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    np.testing.assert_allclose(np.asarray(two["probs"]), np.asarray(one["probs"]), atol=1e-5)
    assert one["loss"][-1] < one["loss"][0]  # it did train
    feats = result["features"]
    assert feats["replicas"] == 2
    np.testing.assert_allclose(np.asarray(feats["two"]), np.asarray(feats["one"]), atol=1e-5)
    assert np.asarray(feats["one"]).shape == (7, 1280) and np.abs(feats["one"]).sum() > 0


# ---------------------------------------------------------------------------------------------
# Two workers on 127.0.0.1: fine_tuning under MultiWorkerMirroredStrategy, only the chief writes
# ---------------------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_two_workers_fine_tune_and_only_the_chief_writes(tmp_path, kedro_project, make_image):
    import shutil

    import keras
    import mlflow

    chief_dir = kedro_project.path
    write_tiny_inputs(chief_dir, tmp_path / "photos", make_image)
    worker_dir = type(kedro_project)(tmp_path / "worker1").path  # a second machine: its own copy of the project
    shutil.rmtree(worker_dir / "data")
    shutil.copytree(chief_dir / "data", worker_dir / "data")
    before = _files(worker_dir / "data")
    head_bytes = (chief_dir / "data" / "06_models" / "head_classifier.keras").read_bytes()
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name("transfer_lab") is None:  # both workers look it up at start
        client.create_experiment("transfer_lab")
    n_runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))

    ports = _free_ports(2)
    params = ",".join([
        "backbone.name=mobilenet_v2", "backbone.weights=none", "backbone.image_size=32", "backbone.alpha=0.35",
        "fine_tuning.unfreeze=1", "fine_tuning.epochs=2", "fine_tuning.batch_size=4", "fine_tuning.augmentation=null",
        "fine_tuning.cache_images=false", "runtime.strategy=multi_worker",
    ])
    procs = []
    for index, cwd in enumerate((chief_dir, worker_dir)):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2",
               "MLFLOW_TRACKING_URI": uri, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "400"}  # unwrapped log lines
        log = open(tmp_path / f"worker{index}.log", "w")
        procs.append((subprocess.Popen([str(KEDRO), "run", "--pipelines=fine_tuning", f"--params={params}"],
                                       cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        for proc, log in procs:
            proc.wait(timeout=300)
            log.close()
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    for i, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, f"worker {i} failed:\n{logs[i][-5000:]}"
        assert "strategy multi_worker with 2 replica(s) on 2 worker(s)" in logs[i], logs[i][-3000:]

    # The chief wrote the fine-tuned model and the reports; the other worker wrote nothing.
    models = chief_dir / "data" / "06_models"
    assert (models / "finetuned_classifier.keras").stat().st_size > 1000
    tuned = keras.saving.load_model(models / "finetuned_classifier.keras", compile=False)
    head = keras.saving.load_model(models / "head_classifier.keras", compile=False)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(tuned.weights, head.weights))
    assert (models / "head_classifier.keras").read_bytes() == head_bytes  # fine_tuning leaves head_training's file
    metrics = json.loads((chief_dir / "data" / "08_reporting" / "finetune_metrics.json").read_text())
    assert metrics["fine_tuning"]["epochs_run"] >= 1
    assert (chief_dir / "data" / "08_reporting" / "finetune_comparison.md").exists()
    assert _files(worker_dir / "data") == before
    assert not (worker_dir / "data" / "06_models" / "finetuned_classifier.keras").exists()
    # One MLflow run (the chief's), which says how it ran.
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == n_runs_before + 1
    new = max(runs, key=lambda r: r.info.start_time)
    assert new.data.params["runtime.used.strategy"] == "multi_worker"
    assert new.data.params["runtime.used.workers"] == "2" and new.data.params["runtime.used.replicas"] == "2"
    assert new.data.tags["strategy"] == "multi_worker"


def test_mixed_precision_keeps_the_softmax_float32():
    import keras

    from transfer_lab.models.backbones import build_classifier, build_head
    from transfer_lab.params.backbone import BackboneParams

    try:
        rt = distribute.setup_runtime(RuntimeParams(strategy="none", mixed_precision="mixed_bfloat16"))
        assert rt.precision == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        with rt.scope():
            model = build_classifier(BackboneParams.model_validate({"weights": "none", "image_size": 32, "alpha": 0.35}),
                                     build_head(1280, 3, 0.0))
        assert model.get_layer("logits").dtype_policy.compute_dtype == "bfloat16"
        assert model.get_layer("probabilities").dtype_policy.name == "float32"
        probs = np.asarray(model(np.zeros((1, 32, 32, 3), np.float32)))
        assert probs.dtype == np.float32 and abs(float(probs.sum()) - 1.0) < 1e-6
    finally:
        distribute.setup_runtime({"strategy": "none", "mixed_precision": "off"})
    assert keras.mixed_precision.global_policy().name == "float32"
