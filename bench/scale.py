"""Scale-out benchmark: feature extraction and one fine-tuning epoch under each strategy and
precision this machine offers (src/transfer_lab/runtime/strategy.py), in images/s, with the ratios to
the first (baseline) configuration.

- On a CPU: one device (baseline) against the CPU split into two logical devices with
  MirroredStrategy (``--cpu-devices``); ``--precisions float32,mixed_bfloat16`` adds bfloat16.
- On an NVIDIA GPU: float32 (baseline) against mixed_float16, each with the default strategy, and
  MirroredStrategy over all GPUs when there are several.

Each configuration runs in a fresh Python process (logical devices, strategies and the precision
policy are per process). Run from the repository root:

    python bench/scale.py --photos ../shared/data/PetImages \\
        --weights ../shared/weights/mobilenet_v2_1.0_imagenet_no_top.weights.h5 \\
        --n 96 --image-size 160 --batch-size 16 --out bench_scale.json

``--batch-size`` is per replica (as in the pipelines), so two replicas process twice the global
batch. The fine-tuning epoch trains the top 3 blocks (BatchNorm frozen) of backbone + a new head,
and is timed on the second epoch (the first one traces and compiles).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXTS = {".jpg", ".jpeg", ".png"}


def photos(root: Path, n: int) -> tuple[list[str], list[int]]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTS)
    if not files:
        sys.exit(f"No photos under {root}: give --photos a folder of class sub-folders (e.g. ../shared/data/PetImages).")
    classes = sorted({p.parent.name for p in files})
    # round-robin over the classes so that a small n still has every class
    by_class = {c: [p for p in files if p.parent.name == c] for c in classes}
    picked: list[Path] = []
    while len(picked) < n and any(by_class.values()):
        for c in classes:
            if by_class[c] and len(picked) < n:
                picked.append(by_class[c].pop(0))
    return [str(p) for p in picked], [classes.index(p.parent.name) for p in picked]


# ---------------------------------------------------------------------------------------------
# One configuration (child process)
# ---------------------------------------------------------------------------------------------


def run_config(args: argparse.Namespace, runtime: dict) -> dict:
    import numpy as np

    from transfer_lab.params.runtime import RuntimeParams
    from transfer_lab.runtime import strategy as distribute
    from transfer_lab.runtime.devices import set_seed

    rt = distribute.setup_runtime(RuntimeParams.model_validate(runtime))  # first: logical devices and strategies need a fresh TF
    set_seed(0)
    from transfer_lab.models.backbones import build_classifier, build_feature_extractor, build_head
    from transfer_lab.params.backbone import BackboneParams
    from transfer_lab.data.tfdata import train_dataset
    from transfer_lab.models.training import compile_for_fine_tuning
    from transfer_lab.models.unfreeze import unfreeze_top
    from transfer_lab.data.tfdata import image_dataset
    from transfer_lab.models.predict import predict_batches

    paths, labels = photos(Path(args.photos), args.n)
    n_classes = max(labels) + 1
    cfg = BackboneParams.model_validate({"name": args.backbone, "weights": args.weights or "none",
                                      "image_size": args.image_size, "alpha": args.alpha})
    batch = rt.global_batch(args.batch_size)

    # Feature extraction: decoded photos cached in memory first, so the model is what is timed.
    with rt.scope():
        extractor = build_feature_extractor(cfg)
    ds = image_dataset(paths, image_size=cfg.size, batch_size=batch, cache=True)
    for _ in predict_batches(extractor, ds, rt):  # warm-up: decode, trace, compile
        pass
    t0 = time.perf_counter()
    feats = np.concatenate(list(predict_batches(extractor, ds, rt)))
    extract_s = time.perf_counter() - t0
    assert feats.shape == (len(paths), extractor.output_shape[-1])

    # One fine-tuning epoch.
    with rt.scope():
        model = build_classifier(cfg, build_head(int(feats.shape[1]), n_classes, 0.2))
        unfreeze_top(model, cfg.name, 3)
        compile_for_fine_tuning(model, 1e-5, args.jit_compile if args.jit_compile != "auto" else rt.jit_compile)
    train = rt.shard(train_dataset(paths, np.asarray(labels), image_size=cfg.size, batch_size=batch, seed=0, cache=True))
    t0 = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    first_epoch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hist = model.fit(train, epochs=1, verbose=0)
    epoch_s = time.perf_counter() - t0
    return {
        **rt.describe(),
        "n_images": len(paths),
        "image_size": cfg.size,
        "global_batch": batch,
        "extract_s": extract_s,
        "extract_images_per_s": len(paths) / extract_s,
        "finetune_first_epoch_s": first_epoch_s,
        "finetune_epoch_s": epoch_s,
        "finetune_images_per_s": len(paths) / epoch_s,
        "finetune_loss": float(hist.history["loss"][-1]),
        "probabilities_dtype": str(model.output.dtype),
    }


# ---------------------------------------------------------------------------------------------
# Parent: which configurations, one process each, table and ratios
# ---------------------------------------------------------------------------------------------


def configurations(args: argparse.Namespace) -> list[dict]:
    import tensorflow as tf  # listing physical devices does not initialise TensorFlow

    gpus = tf.config.list_physical_devices("GPU")
    precisions = [p for p in args.precisions.split(",") if p] if args.precisions else None
    out = []
    if gpus:
        for p in precisions or ["float32", "mixed_float16"]:
            out.append({"label": f"1 GPU, {p}" if len(gpus) == 1 else f"default strategy, {p}",
                        "strategy": "none", "mixed_precision": p})
        if len(gpus) > 1:
            for p in precisions or ["float32", "mixed_float16"]:
                out.append({"label": f"mirrored over {len(gpus)} GPUs, {p}", "strategy": "mirrored",
                            "mixed_precision": p})
    else:
        for p in precisions or ["float32"]:
            out.append({"label": f"CPU, one device, {p}", "strategy": "none", "mixed_precision": p})
            out.append({"label": f"CPU, {args.cpu_devices} logical devices (mirrored), {p}", "strategy": "mirrored",
                        "mixed_precision": p, "cpu_devices": args.cpu_devices})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="../shared/data/PetImages", help="folder of class sub-folders of photos")
    ap.add_argument("--weights", default="../shared/weights/mobilenet_v2_1.0_imagenet_no_top.weights.h5",
                    help="backbone weights file without the top ('none' = random)")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=96, help="photos timed")
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=16, help="per replica")
    ap.add_argument("--cpu-devices", type=int, default=2, help="logical CPU devices for the mirrored run on a CPU")
    ap.add_argument("--precisions", default="", help="comma list, e.g. float32,mixed_float16 (default: per device)")
    ap.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    ap.add_argument("--out", default="", help="write the results to this JSON file")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.jit_compile = {"true": True, "false": False}.get(args.jit_compile, "auto")
    if args.weights and args.weights.lower() != "none" and not Path(args.weights).is_file():
        sys.exit(f"--weights: no such file {args.weights} (give a Keras weights file without the top, or 'none').")

    if args.child:
        runtime = json.loads(args.child)
        label = runtime.pop("label")
        res = run_config(args, {**runtime})
        res["label"] = label
        print("RESULT " + json.dumps(res), flush=True)
        return

    results = []
    for conf in configurations(args):
        print(f"== {conf['label']}", flush=True)
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", json.dumps(conf)]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"   failed:\n{proc.stderr[-3000:]}", flush=True)
            results.append({"label": conf["label"], "error": proc.stderr[-3000:]})
            continue
        res = json.loads(line[7:])
        results.append(res)
        print(f"   {res['device']}: {res['replicas']} replica(s), {res['precision']}, global batch {res['global_batch']}: "
              f"extraction {res['extract_images_per_s']:.1f} img/s, fine-tuning epoch {res['finetune_images_per_s']:.1f} img/s",
              flush=True)

    ok = [r for r in results if "error" not in r]
    if ok:
        base = ok[0]
        print(f"\n{'configuration':58s} {'extract img/s':>14s} {'ratio':>6s} {'finetune img/s':>15s} {'ratio':>6s}")
        for r in ok:
            r["extract_ratio"] = r["extract_images_per_s"] / base["extract_images_per_s"]
            r["finetune_ratio"] = r["finetune_images_per_s"] / base["finetune_images_per_s"]
            print(f"{r['label']:58s} {r['extract_images_per_s']:14.1f} {r['extract_ratio']:6.2f} "
                  f"{r['finetune_images_per_s']:15.1f} {r['finetune_ratio']:6.2f}")
        print(f"(ratios against: {base['label']}; {base['n_images']} photos at {base['image_size']} px, "
              f"per-replica batch {args.batch_size})")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "child"},
                                              "results": results}, indent=2, default=str))
        print(f"Results written to {args.out}")


if __name__ == "__main__":
    main()
