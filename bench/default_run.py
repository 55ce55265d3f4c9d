"""The README's default offline run, timed: ``kedro run`` with the "Offline run" parameters (cats vs
dogs at 160 px, MobileNetV2 weights from ../shared) in a scratch copy of the project, from empty
data folders (no features, pixels or models cached), then the seconds per pipeline (the project
hook's data/08_reporting/run_timings.json), the wall time of the whole command and the figures.

    python bench/default_run.py                      # a fresh scratch copy in a temporary folder
    python bench/default_run.py --keep /tmp/speed    # keep the copy (and its data/) there
    python bench/default_run.py --pipelines fine_tuning --reuse /tmp/speed   # rerun one pipeline

Nothing is written into the checkout. The photos and weights come from ../shared
(TRANSFER_LAB_SHARED overrides it). Run it on a quiet machine: other work on the 2 cores
inflates every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()
DATA_FOLDERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                "07_model_output", "08_reporting")
SKIP = {".git", "data", "mlruns", "mlflow.db", ".venv", "__pycache__", ".pytest_cache"}  # at the top level
CACHES = ("__pycache__", ".pytest_cache", "*.pyc")


def readme_params(shared: Path) -> str:
    w = shared / "weights"
    return ",".join([
        f"data.source={shared / 'data' / 'PetImages'}", "data.labels=species", "backbone.image_size=160",
        f"backbone.weights={w / 'mobilenet_v2_1.0_imagenet_no_top.weights.h5'}",
        f"backbone.classifier_weights={w / 'mobilenet_v2_1.0_imagenet.weights.h5'}",
        f"backbone.imagenet_labels={w / 'imagenet_labels.txt'}",
        f"visualization.second_model.weights={w / 'mobilenet_0.25_imagenet.weights.h5'}",
        f"adversarial.transfer.weights={w / 'mobilenet_0.25_imagenet.weights.h5'}",
    ])


def scratch_copy(dest: Path) -> None:
    """The project without its data, models and tracking store; empty data folders as the repo has them."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ROOT.iterdir():
        if item.name in SKIP:
            continue
        target = dest / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*CACHES))
        else:
            shutil.copy2(item, target)
    for d in DATA_FOLDERS:
        (dest / "data" / d).mkdir(parents=True, exist_ok=True)
        (dest / "data" / d / ".gitkeep").touch()


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def figures(project: Path) -> dict[str, float | None]:
    rep = project / "data" / "08_reporting"
    head = _json(rep / "head_metrics.json")
    ft = _json(rep / "finetune_comparison.json")
    adv = _json(rep / "adversarial.json")
    exp = _json(rep / "explanations.json")
    return {
        "head test accuracy": head.get("accuracy"),
        "fine-tuned test accuracy": (ft.get("fine_tuned") or {}).get("accuracy"),
        "fine-tuning epochs run": (_json(rep / "finetune_metrics.json").get("fine_tuning") or {}).get("epochs_run"),
        f"attack success at {((adv.get('attack') or {}).get('epsilon'))}/255": adv.get("success_rate"),
        "robust accuracy": adv.get("robust_accuracy"),
        "explanation faithfulness": {k: v for k, v in exp.items() if "deletion" in k or "sanity" in k} or None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="make the scratch copy here and keep it")
    ap.add_argument("--reuse", type=Path, help="an existing scratch copy (its data/ stays: rerun pipelines)")
    ap.add_argument("--pipelines", help="kedro run --pipelines=... (default: the default run)")
    ap.add_argument("--nice", type=int, default=5)
    a = ap.parse_args()
    if not (SHARED / "data" / "PetImages").is_dir():
        sys.exit(f"{SHARED}/data/PetImages is missing: set TRANSFER_LAB_SHARED to the shared folder.")

    tmp = None
    if a.reuse:
        project = a.reuse
    else:
        project = a.keep or Path(tempfile.mkdtemp(prefix="default_run_"))
        tmp = None if a.keep else project
        scratch_copy(project)
    kedro = Path(sys.executable).with_name("kedro")
    cmd = ["nice", "-n", str(a.nice), str(kedro), "run", "--params", readme_params(SHARED)]
    if a.pipelines:
        cmd.append(f"--pipelines={a.pipelines}")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "TRANSFER_LAB_PROGRESS": "0"}
    log = project / "default_run.log"
    print(f"Running in {project} (log {log}) ...", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if rc:
        print(log.read_text()[-3000:])
        sys.exit(f"kedro run failed (exit {rc}); see {log}")
    timings = _json(project / "data" / "08_reporting" / "run_timings.json")
    print(f"\n{'pipeline':<20}{'seconds':>9}")
    for name, secs in (timings.get("pipeline_s") or {}).items():
        print(f"{name:<20}{secs:>9.1f}")
    print(f"{'nodes + hooks':<20}{timings.get('total_s', float('nan')):>9.1f}")
    print(f"{'kedro run (wall)':<20}{wall:>9.1f}")
    print()
    for k, v in figures(project).items():
        print(f"{k}: {v}")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
