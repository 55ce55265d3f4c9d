"""Grad-CAM seconds per photo at 224 px after tracing: transfer_lab.models.explain (one traced
function per model, batched; plain Grad-CAM and the saved default gradcam_blurgrad) against plain GradientTape code written the naive way (eager, one
photo at a time, the keras.io recipe). Target of issue 18: under 0.5 s a photo on 2 cores.

    python bench/explain.py [--photos 32] [--batch-size 16] [--weights ../shared/weights/...]

The keras.io recipe itself (``keras.Model(model.inputs, [inner_layer.output, model.output])``)
fails on a classifier with a nested backbone ("Graph disconnected", tensorflow#44462); the naive
code here therefore uses our re-wired model but runs it eagerly, photo by photo. tf-keras-vis is
not compared: it targets tf.keras (Keras 2), not Keras 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared"))


def naive_gradcam(grad_model, image):
    """The keras.io Grad-CAM recipe, eager, one photo."""
    import numpy as np
    import tensorflow as tf

    x = tf.convert_to_tensor(image[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        acts, logits, probs = grad_model(x)
        cls = int(tf.argmax(probs[0]))
        score = logits[:, cls]
    grads = tape.gradient(score, acts)
    weights = tf.reduce_mean(grads, axis=(0, 1, 2))
    cam = tf.nn.relu(tf.reduce_sum(acts[0] * weights, axis=-1))[..., None]
    cam = tf.image.resize(cam, image.shape[:2])[..., 0].numpy()
    return (cam - cam.min()) / max(float(cam.max() - cam.min()), 1e-12) if cam.max() > cam.min() else np.zeros_like(cam)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--weights", default=str(SHARED / "weights" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"))
    args = ap.parse_args()

    import keras
    import numpy as np

    from transfer_lab.data.tfdata import load_batch
    from transfer_lab.models import explain as ex
    from transfer_lab.models.backbones import backbone_of, build_classifier, build_head, last_conv_layer
    from transfer_lab.params.backbone import BackboneParams
    from transfer_lab.runtime.devices import describe_devices

    cfg = BackboneParams(name="mobilenet_v2", weights=args.weights, image_size=224)
    model = build_classifier(cfg, build_head(1280, 2))
    paths = sorted((SHARED / "data" / "PetImages" / "Cat").glob("*.jpg"))[: args.photos]
    images = load_batch([str(p) for p in paths], 224)
    print(f"devices: {describe_devices()}; {len(images)} photos at 224 px, cores: {os.cpu_count()}")

    inner = backbone_of(model)
    try:  # the keras.io recipe on a nested backbone
        keras.Model(model.inputs, [inner.get_layer(last_conv_layer(inner)).output, model.output])
        print("keras.io recipe: built (unexpected)")
    except Exception as exc:  # noqa: BLE001 - we report whatever it raises
        print(f"keras.io recipe on the nested backbone: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")

    explainer = ex.explainer(model)
    t = time.perf_counter()
    explainer.gradcam(images[:2], batch_size=args.batch_size)
    print(f"ours: first call (trace) {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    ours = explainer.gradcam(images, batch_size=args.batch_size).maps
    per_ours = (time.perf_counter() - t) / len(images)
    explainer.gradcam_blurgrad(images[:2], batch_size=args.batch_size)  # its own trace
    t = time.perf_counter()
    explainer.gradcam_blurgrad(images, batch_size=args.batch_size)
    per_blurgrad = (time.perf_counter() - t) / len(images)

    naive_gradcam(explainer.net, images[0])  # warm-up
    t = time.perf_counter()
    naive = np.stack([naive_gradcam(explainer.net, im) for im in images])
    per_naive = (time.perf_counter() - t) / len(images)
    print(f"ours (traced, batch {args.batch_size}): {per_ours:.3f} s/photo")
    print(f"naive GradientTape (eager, one photo a call): {per_naive:.3f} s/photo")
    print(f"ratio naive/ours: {per_naive / per_ours:.1f}x; same maps: max |diff| {np.abs(ours - naive).max():.2e}")
    print(f"ours gradcam_blurgrad (the saved default: Grad-CAM x gradient . (photo - blurred photo)): "
          f"{per_blurgrad:.3f} s/photo")
    print(f"target < 0.5 s/photo: {'met' if max(per_ours, per_blurgrad) < 0.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
