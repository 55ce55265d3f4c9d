"""Ideal class images: ours (transfer_lab.models.ideal with the parameters file's settings) against the
seed lesson's plain gradient ascent on pixels, in one run, on the ../shared ImageNet models.

Three runs per class, same model, same steps, same seed:
  baseline   plain: one variable per pixel, no colour decorrelation, no transforms, no TV/L2
             (the seed lesson; learning rate --baseline-lr)
  ours-noTV  ours with the smoothness terms (TV, L2) off: the reference for the TV target
  ours       ours as in conf/base/parameters_visualization.yml
Each result is judged on the saved whole-pixel image: probability under MobileNetV2 (the model
it was made for), mean total variation per pixel, and the class's probability and rank under the
second model, MobileNet 0.25 (does the image carry the class's look, or one model's quirks?).
Seconds are the optimisation only (the first step includes tracing the tf.function, about 5-8 s);
the machine's load average is printed with each line because the CPU may be shared.

    .venv/bin/python bench/visualization.py                       # zebra, tabby
    .venv/bin/python bench/visualization.py --classes zebra,tabby,goldfish --steps 256
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("TRANSFER_LAB_SHARED", "../shared"))
    ap.add_argument("--classes", default="zebra,tabby")
    ap.add_argument("--steps", type=int, default=None, help="default: the parameters file's steps")
    ap.add_argument("--tv", type=float, default=None, help="default: the parameters file's total_variation weight")
    ap.add_argument("--baseline-lr", type=float, default=2.0, help="Adam step on raw 0-255 pixel logits")
    ap.add_argument("--skip-baseline", action="store_true", help="only ours and ours-noTV")
    ap.add_argument("--out", default=None, help="folder for the PNGs (default: none written)")
    args = ap.parse_args()

    import yaml

    from transfer_lab.models import ideal
    from transfer_lab.models.backbones import build_imagenet_classifier, imagenet_class_names, logits_model, resolve_class
    from transfer_lab.params.visualization import VisualizationParams

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "conf/base/parameters_visualization.yml").read_text())["visualization"]
    if args.steps:
        params["steps"] = args.steps
    if args.tv is not None:
        params["regularizers"] = {**(params.get("regularizers") or {}), "total_variation": args.tv}
    ours = VisualizationParams.model_validate(params).ideal_config()
    plain = ideal.IdealConfig(steps=ours.steps, learning_rate=args.baseline_lr, seed=ours.seed, parameterization="pixel",
                              decorrelate_colour=False, regularizers={}, jitter=0, scale=(1.0, 1.0), rotate=0.0)
    runs = [("baseline", plain), ("ours-noTV", ours.without_smoothness()), ("ours", ours)]
    if args.skip_baseline:
        runs = runs[1:]

    w = Path(args.shared) / "weights"
    model = build_imagenet_classifier("mobilenet_v2", w / "mobilenet_v2_1.0_imagenet.weights.h5")
    second = build_imagenet_classifier("mobilenet", w / "mobilenet_0.25_imagenet.weights.h5", alpha=0.25)
    names = imagenet_class_names(w / "imagenet_labels.txt")
    logits = logits_model(model)
    print(f"MobileNetV2 1.0 (made for) vs MobileNet 0.25 (second model); {ours.steps} steps; {os.cpu_count()} CPUs")
    print(f"ours: {ours}")
    results: dict[tuple[str, str], dict] = {}
    for cls in [c.strip() for c in args.classes.split(",") if c.strip()]:
        idx = resolve_class(cls, names, "--classes")
        for tag, cfg in runs:
            res = ideal.generate(logits, idx, cfg, progress=False)
            p2, rank = ideal.group_rank(ideal.class_probabilities(second, res.image), [idx])
            results[(cls, tag)] = {"p": res.probability, "tv": res.tv_per_pixel, "p2": p2, "rank": rank, "s": res.seconds}
            print(f"{cls:>10} {tag:>9}: p={res.probability:.4f}  TV/px={res.tv_per_pixel:6.2f}  second model p={p2:.4f} "
                  f"rank={rank:4d}  {res.seconds:5.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
            if args.out:
                from transfer_lab.data.imaging import save_png

                Path(args.out).mkdir(parents=True, exist_ok=True)
                save_png(res.image, Path(args.out) / f"{cls}_{tag}.png")
        n, o = results[(cls, "ours-noTV")], results[(cls, "ours")]
        line = f"{cls:>10}  TV ours/ours-noTV = {o['tv'] / n['tv']:.2f} (target <= 0.5)"
        if (cls, "baseline") in results:
            b = results[(cls, "baseline")]
            line += (f";  TV ours/baseline = {o['tv'] / b['tv']:.2f};  second-model rank baseline {b['rank']} -> "
                     f"ours {o['rank']} (target <= 5)")
        print(line)
    ok = all(r["p"] >= 0.95 for (c, t), r in results.items() if t == "ours")
    print(f"all 'ours' images p >= 0.95: {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
