"""Fine-tuning against its baseline, the head-only classifier, on ../shared photos.

Runs data_ingestion -> feature_extraction -> head_training -> fine_tuning in a throw-away copy of
this project (nothing is written into the checkout), then prints the head-only and fine-tuned test
figures, their ratio, and the fine-tuning speed (with the machine's load, since the CPU may be shared).

    python bench/fine_tuning.py --dataset cats_dogs --size 224
    python bench/fine_tuning.py --dataset oxford --size 224
    python bench/fine_tuning.py --dataset cats_dogs --size 160 --epochs 1   # speed: one epoch at 160 px
    python bench/fine_tuning.py --dataset both --seeds 1,2,3      # both data sets, mean and spread over seeds

``--workdir`` keeps the project copy; ``--skip-head`` re-runs fine_tuning only on an existing one
(the head-only classifier is reused: fine_tuning always starts from it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()
DATASETS = {
    "cats_dogs": (SHARED / "data" / "PetImages", "species"),
    "oxford": (SHARED / "data" / "oxford-iiit-pet", "breed"),
}


def run(project: Path, pipelines: list[str], params: dict) -> float:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    old = Path.cwd()
    os.chdir(project)
    t0 = time.perf_counter()
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            session.run(pipeline_names=pipelines)
    finally:
        os.chdir(old)
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
    return time.perf_counter() - t0


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        cur = out
        *parents, last = key.split(".")
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[last] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=[*sorted(DATASETS), "both"], default="cats_dogs")
    ap.add_argument("--source", default=None, help="another photo folder (with --labels) instead of --dataset")
    ap.add_argument("--labels", default=None)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--unfreeze", default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seeds", default=None,
                    help="comma-separated fine_tuning seeds (e.g. 1,2,3): fine_tuning once per seed on the same head, "
                         "then the mean and spread")
    ap.add_argument("--workdir", default=None, help="keep the project copy here (default: a temp folder, removed); "
                                                    "with --dataset both, one sub-folder per data set")
    ap.add_argument("--skip-head", action="store_true", help="reuse data, features and head of --workdir")
    ap.add_argument("--set", action="append", default=[], help="extra fine_tuning params, e.g. --set monitor=val_accuracy")
    ap.add_argument("--param", action="append", default=[],
                    help="any other parameter, e.g. --param head_training.refit_on_val=false")
    args = ap.parse_args()

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    args.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")  # the user's, if set; else one per project
    names = sorted(DATASETS) if args.dataset == "both" else [args.dataset]
    reports = []
    for name in names:
        workdir = args.workdir
        if workdir and len(names) > 1:
            workdir = str(Path(workdir) / name)
        reports.append(bench_one(args, name, workdir))
    print()
    print("\n\n".join(reports))


def bench_one(args: argparse.Namespace, dataset: str, workdir: str | None) -> str:
    import numpy as np

    source, labels = DATASETS[dataset]
    if args.source:
        source, labels = Path(args.source).resolve(), args.labels or labels
    weights = SHARED / "weights" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"
    tmp = None
    if workdir:
        project = Path(workdir).resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench_fine_tuning_"))
        project = tmp / "project"
    if (project / "conf").exists():
        shutil.rmtree(project / "conf")
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("credentials*", "local"))
    (project / "conf" / "local").mkdir(exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir(exist_ok=True)  # the package itself is installed (editable)
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri or f"sqlite:///{project / 'mlflow.db'}"

    params = {
        "data.source": str(source), "data.labels": labels,
        "backbone.weights": str(weights), "backbone.image_size": args.size,
    }
    ft = {"epochs": args.epochs, "unfreeze": args.unfreeze, "learning_rate": args.lr, "batch_size": args.batch_size}
    for k, v in ft.items():
        if v is not None:
            params[f"fine_tuning.{k}"] = int(v) if isinstance(v, str) and v.isdigit() else v
    items = [f"fine_tuning.{item}" for item in args.set] + args.param
    for item in items:
        k, v = item.split("=", 1)
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
        params[k] = v

    load_before = os.getloadavg()
    t_head = 0.0
    if not args.skip_head:
        t_head = run(project, ["data_ingestion", "feature_extraction", "head_training"], nest(params))
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    runs, t_ft = [], []
    for seed in seeds:
        if seed is not None:
            params["fine_tuning.seed"] = seed
        t_ft.append(run(project, ["fine_tuning"], nest(params)))
        runs.append((json.loads((project / "data/08_reporting/finetune_comparison.json").read_text()),
                     json.loads((project / "data/08_reporting/finetune_metrics.json").read_text())))
    load_after = os.getloadavg()

    comp, metrics = runs[-1]
    s = metrics["fine_tuning"]
    head = comp["head_only"]
    out = [f"dataset {dataset} ({labels}), {args.size} px, test n={comp['n_test']}, train n={s['n_train']}",
           f"fine-tuning: unfreeze={s['unfreeze']} ({s['unfrozen_layers']} layers from {s['first_unfrozen_layer']}), "
           f"lr {s['learning_rate']:g}->{s['final_learning_rate']:g}, epochs run "
           f"{[m['fine_tuning']['epochs_run'] for _, m in runs]} (best {[m['fine_tuning']['best_epoch'] for _, m in runs]})"
           + (f", seeds {seeds}" if seeds != [None] else "")]
    spread = len(runs) > 1
    out.append(f"{'metric':<25}{'head only':>11}{'fine-tuned':>12}{'+- sd' if spread else '':>8}{'ratio':>8}")
    for k in ("accuracy", "mean_per_class_accuracy", "top3_accuracy", "macro_f1"):
        vals = [c["fine_tuned"][k] for c, _ in runs if k in c["fine_tuned"]]
        if k in head and vals:
            mean = float(np.mean(vals))
            sd = f"{float(np.std(vals, ddof=1)):.4f}" if spread else ""
            out.append(f"{k:<25}{head[k]:>11.4f}{mean:>12.4f}{sd:>8}"
                       f"{mean / head[k] if head[k] else float('nan'):>8.3f}")
    err_h = 1 - head["accuracy"]
    errs = [round((1 - c["fine_tuned"]["accuracy"]) * comp["n_test"]) for c, _ in runs]
    out.append(f"test errors: head only {round(err_h * comp['n_test'])}, fine-tuned {errs}")
    hist = json.loads((project / "data/08_reporting/finetune_history.json").read_text())
    if "val_accuracy" in hist:
        out.append(f"validation (last run, per epoch): val_accuracy {[round(v, 4) for v in hist['val_accuracy']]}, "
                   f"val_loss {[round(v, 4) for v in hist.get('val_loss', [])]}")
    out.append(f"speed: {s['train_seconds_per_epoch']:.1f} s per training epoch over {s['n_train']} photos "
               f"({s['train_images_per_second']:.1f} img/s -> {1000 / s['train_images_per_second']:.0f} s per 1,000 "
               f"photos); per-epoch train seconds {[round(x, 1) for x in s.get('train_seconds', [])] or 'n/a'}")
    out.append(f"wall: head pipelines {t_head:.0f} s, fine_tuning pipeline {[round(t) for t in t_ft]} s; "
               f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} cores")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        out.append(f"project kept in {project}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
