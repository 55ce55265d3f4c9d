"""Our compiled PGD (transfer_lab.models.attacks) against IBM ART's ProjectedGradientDescent, in one run.

Same model, same images, same budget, step size, steps and target; both results are judged the
same way: rounded to whole pixels and clipped to 0-255 (a real image), then the model's top-1 class.
ART has no per-image early stop, so ours is timed twice: as shipped (early stop) and with early
stop off (the same number of gradient steps as ART). Compile/trace time of the first call is
excluded for both (a warm-up on 2 images) and printed separately.

    .venv/bin/python bench/adversarial.py                    # ImageNet MobileNetV2, 20 dogs -> tabby
    .venv/bin/python bench/adversarial.py --model data/06_models/classifier.keras --target cat --size 160
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("TRANSFER_LAB_SHARED", "../shared"))
    ap.add_argument("--model", default=None, help="a .keras classifier (default: the ImageNet MobileNetV2 in ../shared)")
    ap.add_argument("--class-names", default=None, help="class_names.json of --model (default: beside it)")
    ap.add_argument("--target", default="tabby", help="one target class name (ART takes one class)")
    ap.add_argument("--images", default=None, help="glob of photos (default: ../shared Dog photos)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--eps", type=float, default=2.0, help="0-255 units")
    ap.add_argument("--step", type=float, default=0.5, help="0-255 units")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args()

    import json

    import tensorflow as tf

    from transfer_lab.models import attacks, backbones
    from transfer_lab.data.tfdata import load_batch

    if args.model:
        import keras

        model = keras.saving.load_model(args.model, compile=False)
        names_path = args.class_names or os.path.join(os.path.dirname(args.model), "class_names.json")
        names = json.load(open(names_path))
        size = int(model.input_shape[1])
    else:
        size = args.size
        model = backbones.build_imagenet_classifier(
            "mobilenet_v2", f"{args.shared}/weights/mobilenet_v2_1.0_imagenet.weights.h5", image_size=size)
        names = backbones.imagenet_class_names(f"{args.shared}/weights/imagenet_labels.txt")
    target = backbones.resolve_class(args.target, names, "--target")
    pattern = args.images or f"{args.shared}/data/PetImages/Dog/*.jpg"
    paths = sorted(glob.glob(pattern))[: args.n + 2]
    x_all = load_batch(paths, size)
    warm, x = x_all[:2], x_all[2:]
    n = len(x)
    logits = backbones.logits_model(model)

    def judge(adv: np.ndarray) -> tuple[float, float]:
        real = np.clip(np.rint(adv), 0, 255).astype(np.float32)
        pred = np.argmax(np.asarray(model.predict(real, verbose=0, batch_size=32)), axis=1)
        linf = float(np.abs(real - x).max())
        return float(np.mean(pred == target)), linf

    print(f"model: {model.name} ({size} px, {len(names)} classes), {n} images from {pattern}")
    print(f"target: {names[target]} ({target}); eps={args.eps:g}/255, step={args.step:g}/255, {args.steps} steps, "
          f"no random start, batch {args.batch}; CPU threads: {os.cpu_count()}")
    clean = np.argmax(np.asarray(model.predict(x, verbose=0)), axis=1)
    print(f"already the target before the attack: {int(np.sum(clean == target))}/{n}")

    # --- IBM ART ----------------------------------------------------------------------------------
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    clf = TensorFlowV2Classifier(
        model=logits, nb_classes=len(names), input_shape=(size, size, 3),
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=True), clip_values=(0.0, 255.0))
    art_pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=args.eps, eps_step=args.step, max_iter=args.steps,
                                       targeted=True, num_random_init=0, batch_size=args.batch, verbose=False)
    y = np.zeros((n, len(names)), np.float32)
    y[:, target] = 1
    t0 = time.perf_counter()
    art_pgd.generate(warm, y=y[:2])
    art_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    adv_art = art_pgd.generate(x, y=y)
    art_s = (time.perf_counter() - t0) / n
    art_ok, art_linf = judge(adv_art)

    # --- ours -------------------------------------------------------------------------------------
    att = attacks.PixelAttack(model)
    results = {}
    for label, early in (("ours (early stop)", True), ("ours (no early stop)", False)):
        cfg = attacks.AttackConfig(method="pgd", epsilon=args.eps, step_size=args.step, steps=args.steps,
                                   early_stop=early, batch_size=args.batch)
        t0 = time.perf_counter()
        att.run(warm, [(target,)] * 2, targeted=True, config=cfg)
        warm_s = time.perf_counter() - t0
        res = att.run(x, [(target,)] * n, targeted=True, config=cfg)
        ok, linf = judge(res.adversarial)
        results[label] = (ok, res.seconds / n, linf, warm_s, float(res.steps[res.success].mean()) if res.success.any() else float("nan"))

    print()
    print(f"{'attack':24s} {'success':>8s} {'s/image':>8s} {'L-inf':>6s} {'speed-up':>9s}  first call")
    print(f"{'ART 1.20 PGD':24s} {art_ok:8.2f} {art_s:8.3f} {art_linf:6.0f} {1.0:8.2f}x  {art_warm:.1f} s")
    for label, (ok, s, linf, warm_s, steps) in results.items():
        print(f"{label:24s} {ok:8.2f} {s:8.3f} {linf:6.0f} {art_s / s:8.2f}x  {warm_s:.1f} s (compile); mean steps to success {steps:.1f}")
    like = results["ours (no early stop)"]  # like for like: the same gradient steps as ART
    verdict = like[0] >= art_ok and art_s / like[1] >= 4.0
    print(f"\ntarget (like for like, no early stop: >= 4x ART's speed, success >= ART's): "
          f"{'met' if verdict else 'NOT met'} ({art_s / like[1]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
