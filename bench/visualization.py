"""Ideal class images: the recipe in conf/base/parameters_visualization.yml ("ours") against the
previous defaults ("before": logit objective, one image, one transformed copy per step, jitter 8,
zoom 0.9-1.1, rotation 10, no blur), and optionally the seed lesson's plain gradient ascent on
pixels ("plain", --plain), on the ../shared ImageNet models, same seed (before: its 192 steps).

Each image is judged on the saved whole-pixel image: probability under MobileNetV2 (the model it
was made for), mean total variation per pixel, and the class's probability and rank under the
second model, MobileNet 0.25 (does the image carry the class's look, or one model's quirks?).
"ours" makes visualization.n_images images per class together (diversity term on); every one is
printed. Seconds are per image (a class's optimisation divided by its images; the first step
includes tracing, a few seconds); the load average is printed because the CPU may be shared.

    .venv/bin/python bench/visualization.py                               # zebra, tabby
    .venv/bin/python bench/visualization.py --classes goldfish,monarch,lemon,golden_retriever --skip-before
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
    ap.add_argument("--n-images", type=int, default=None, help="default: the parameters file's n_images")
    ap.add_argument("--skip-before", action="store_true", help="only ours")
    ap.add_argument("--plain", action="store_true", help="also the plain pixel gradient ascent (Adam lr 2)")
    ap.add_argument("--out", default=None, help="folder for the PNGs (default: none written)")
    args = ap.parse_args()

    import yaml

    from transfer_lab.models import ideal
    from transfer_lab.models.backbones import build_imagenet_classifier, imagenet_class_names, logits_model, resolve_class
    from transfer_lab.params.visualization import VisualizationParams
    from transfer_lab.pipelines.visualization.nodes import diversity_layer

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "conf/base/parameters_visualization.yml").read_text())["visualization"]
    if args.steps:
        params["steps"] = args.steps
    if args.n_images:
        params["n_images"] = args.n_images
    p = VisualizationParams.model_validate(params)
    ours = p.ideal_config()
    # the defaults until issue 22 (192 steps; --steps sets both)
    before = ideal.IdealConfig(steps=args.steps or 192, learning_rate=0.05, seed=ours.seed)
    runs = [] if args.skip_before else [("before", before)]
    if args.plain:
        runs.append(("plain", ideal.IdealConfig(steps=ours.steps, learning_rate=2.0, seed=ours.seed, parameterization="pixel",
                                                decorrelate_colour=False, regularizers={}, jitter=0, scale=(1.0, 1.0),
                                                rotate=0.0)))
    runs.append(("ours", ours))

    w = Path(args.shared) / "weights"
    model = build_imagenet_classifier("mobilenet_v2", w / "mobilenet_v2_1.0_imagenet.weights.h5")
    second = build_imagenet_classifier("mobilenet", w / "mobilenet_0.25_imagenet.weights.h5", alpha=0.25)
    names = imagenet_class_names(w / "imagenet_labels.txt")
    logits = logits_model(model)
    layer = diversity_layer(model, p.diversity_layer)
    features = ideal.features_and_logits(model, layer)
    print(f"MobileNetV2 1.0 (made for) vs MobileNet 0.25 (second model); {ours.steps} steps; {os.cpu_count()} CPUs")
    print(f"ours: {ours} (diversity layer {layer})")
    worst: dict[str, list[tuple[float, int, float]]] = {}
    for cls in [c.strip() for c in args.classes.split(",") if c.strip()]:
        idx = resolve_class(cls, names, "--classes")
        for tag, cfg in runs:
            results = ideal.generate_set(logits, idx, cfg, features_model=features, progress=False)
            for k, res in enumerate(results):
                p2, rank = ideal.group_rank(ideal.class_probabilities(second, res.image), [idx])
                worst.setdefault(tag, []).append((res.probability, rank, res.seconds))
                print(f"{cls:>16} {tag:>6} #{k + 1}: p={res.probability:.4f}  TV/px={res.tv_per_pixel:6.2f}  second model "
                      f"p={p2:.4f} rank={rank:4d}  {res.seconds:5.1f} s/image  (load {os.getloadavg()[0]:.1f})", flush=True)
                if args.out:
                    from transfer_lab.data.imaging import save_png

                    Path(args.out).mkdir(parents=True, exist_ok=True)
                    save_png(res.image, Path(args.out) / f"{cls}_{tag}_{k + 1}.png")
    for tag, rows in worst.items():
        print(f"{tag:>6}: min p={min(r[0] for r in rows):.4f} (target >= 0.95), worst second-model rank "
              f"{max(r[1] for r in rows)} (target <= 5), top-5 {sum(r[1] <= 5 for r in rows)}/{len(rows)}, "
              f"max {max(r[2] for r in rows):.1f} s/image (target <= 60)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
