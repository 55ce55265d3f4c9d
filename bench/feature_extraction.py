"""Feature extraction and head training: the project's path against plain Keras, in one run.

1. Feature extraction, same photos, same backbone and weights, each at its own defaults:
   - baseline: ``keras.utils.image_dataset_from_directory`` + ``model.predict`` (Keras's default
     batch of 32, ``--batch-size``);
   - ours: ``transfer_lab.pipelines.feature_extraction.nodes.run_extractor`` (the pipeline's
     tf.data input over the manifest, the project's decoder, a compiled forward pass) at the
     pipeline's ``feature_extraction.batch_size`` (``auto``: 8 on CPU; ``--ours-batch-size``);
   - for reference, the baseline again at ours' batch size (how much is the batch size alone).
   Each is timed ``--repeats`` times, interleaved (the CPU may be shared), after one warm-up
   batch; the ratio is printed for the best run and the median run of each. Target: ratio
   ours / baseline >= 1.0.
2. Head training, per epoch (after a first, tracing epoch): the same head trained on cached
   features (what head_training does) against the same head on top of the frozen backbone,
   fed with images. Target: >= 20x faster per epoch.

    python bench/feature_extraction.py                       # 200 cats + 200 dogs at 224 px
    python bench/feature_extraction.py --per-class 100 --size 160 --repeats 3

Nothing is written into the checkout (a slice of symlinks goes to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(SHARED / "data" / "PetImages"), help="folder with one sub-folder per class")
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32, help="the baseline's batch (Keras's default: 32)")
    ap.add_argument("--ours-batch-size", default="auto", help="ours: feature_extraction.batch_size (auto or a number)")
    ap.add_argument("--weights", default=str(SHARED / "weights" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"))
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--head-epochs", type=int, default=5, help="epochs of the head on cached features")
    args = ap.parse_args()

    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    import keras

    from transfer_lab.models.backbones import build_classifier, build_feature_extractor, build_head
    from transfer_lab.params.backbone import BackboneParams
    from transfer_lab.data.tfdata import image_dataset
    from transfer_lab.pipelines.feature_extraction.nodes import resolve_batch_size, run_extractor

    src = Path(args.source)
    classes = sorted(d.name for d in src.iterdir() if d.is_dir())
    tmp = Path(tempfile.mkdtemp(prefix="bench_fe_"))
    paths, labels = [], []
    for c, cls in enumerate(classes):
        files = sorted(p for p in (src / cls).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        files = files[: args.per_class]
        (tmp / cls).mkdir()
        for p in files:
            link = tmp / cls / p.name
            link.symlink_to(p)
            paths.append(str(link))
            labels.append(c)
    n = len(paths)
    cfg = BackboneParams(name=args.backbone, weights=args.weights, image_size=args.size)
    extractor = build_feature_extractor(cfg)
    from transfer_lab.runtime.devices import describe_devices

    device = "GPU" if describe_devices()["n_gpus"] else "CPU"
    ours_batch = resolve_batch_size(args.ours_batch_size, on_gpu=device == "GPU")
    print(f"{n} photos ({', '.join(classes)}) from {src}, {cfg.name} at {cfg.size} px on {device}, batch "
          f"{args.batch_size} (baseline) / {ours_batch} (ours, feature_extraction.batch_size={args.ours_batch_size}); "
          f"load average {load()}")

    def keras_predict(batch_size: int) -> np.ndarray:
        ds = keras.utils.image_dataset_from_directory(
            tmp, labels=None, image_size=(cfg.size, cfg.size), batch_size=batch_size, shuffle=False,
            verbose=False)
        return extractor.predict(ds, verbose=0)

    def baseline() -> np.ndarray:
        return keras_predict(args.batch_size)

    def baseline_same_batch() -> np.ndarray:
        return keras_predict(ours_batch)

    def ours() -> np.ndarray:
        return run_extractor(extractor, paths, cfg.size, ours_batch, resize=cfg.resize)  # the pipeline's decoding

    from transfer_lab.data.pixels import cached_pixels

    def ours_pixel_cache() -> np.ndarray:
        """As the pipeline runs: the decoded-pixel cache filled (a fresh folder each time: the one-off
        parallel decode is timed too), then the features from its memory-mapped pixels."""
        folder = Path(tempfile.mkdtemp(prefix="pixels_", dir=tmp))
        px = cached_pixels(paths, cfg.size, folder, cfg.resize)
        return run_extractor(extractor, paths, cfg.size, ours_batch, pixels=px, resize=cfg.resize)

    # The ceiling: the same model, batch and compiled forward pass as ours, on tensors already in
    # memory (decoded beforehand, not timed).
    from transfer_lab.pipelines.feature_extraction.nodes import _compiled_forward

    in_memory = [b for b in image_dataset(paths, None, image_size=cfg.size, batch_size=ours_batch, cache=False,
                                          shuffle=False, resize=cfg.resize)]
    forward = _compiled_forward(extractor, cfg.size)

    def ceiling() -> np.ndarray:
        return np.concatenate([np.asarray(forward(b)) for b in in_memory])

    # warm-up: trace every path once on a few photos
    extractor.predict(np.zeros((2, cfg.size, cfg.size, 3), np.float32), verbose=0)
    run_extractor(extractor, paths[:2], cfg.size, ours_batch, resize=cfg.resize)
    forward(in_memory[0])
    paths_to_time = [("baseline", baseline), ("ours", ours), ("ours_pixel_cache", ours_pixel_cache),
                     ("ceiling", ceiling)]
    if ours_batch != args.batch_size:
        paths_to_time.append(("baseline_same_batch", baseline_same_batch))
    times = {name: [] for name, _ in paths_to_time}
    feats = {}
    for _ in range(args.repeats):
        for name, fn in paths_to_time:
            t0 = time.perf_counter()
            feats[name] = fn()
            times[name].append(time.perf_counter() - t0)
    # Same features? image_dataset_from_directory lists files in the same sorted order.
    diff = float(np.mean(np.abs(feats["baseline"] - feats["ours"])))
    rate = {k: n / min(v) for k, v in times.items()}
    print("\nFeature extraction (images/s, best of %d):" % args.repeats)
    print(f"  baseline  keras image_dataset_from_directory + predict: {rate['baseline']:8.1f}  "
          f"(runs: {', '.join(f'{t:.1f}s' for t in times['baseline'])})")
    print(f"  ours      transfer_lab run_extractor:                    {rate['ours']:8.1f}  "
          f"(runs: {', '.join(f'{t:.1f}s' for t in times['ours'])})")
    med = {k: n / float(np.median(v)) for k, v in times.items()}
    print(f"  ratio ours / baseline: {rate['ours'] / rate['baseline']:.2f} best-of, "
          f"{med['ours'] / med['baseline']:.2f} median  (target >= 1.0); mean |feature "
          f"difference| {diff:.4f} (resize filters differ; ours crops to a square, backbone.resize)")
    print(f"  ours      as the pipeline runs (pixel cache filled, then extraction): {rate['ours_pixel_cache']:8.1f}  "
          f"(runs: {', '.join(f'{t:.1f}s' for t in times['ours_pixel_cache'])}); / baseline "
          f"{rate['ours_pixel_cache'] / rate['baseline']:.2f}")
    print(f"  ceiling   same model and batch on in-memory tensors:     {rate['ceiling']:8.1f}  "
          f"(runs: {', '.join(f'{t:.1f}s' for t in times['ceiling'])}); ours / ceiling: "
          f"{rate['ours'] / rate['ceiling']:.2f} best-of, {med['ours'] / med['ceiling']:.2f} median; as the pipeline "
          f"runs / ceiling {rate['ours_pixel_cache'] / rate['ceiling']:.2f} best-of, "
          f"{med['ours_pixel_cache'] / med['ceiling']:.2f} median (target >= 0.9); "
          f"baseline / ceiling {rate['baseline'] / rate['ceiling']:.2f}")
    if "baseline_same_batch" in times:
        print(f"  reference: the baseline at batch {ours_batch}: {rate['baseline_same_batch']:8.1f}  "
              f"(runs: {', '.join(f'{t:.1f}s' for t in times['baseline_same_batch'])}); ours / it: "
              f"{rate['ours'] / rate['baseline_same_batch']:.2f} best-of, "
              f"{med['ours'] / med['baseline_same_batch']:.2f} median")

    # ---- head training per epoch: cached features vs through the frozen backbone ----
    y = keras.utils.to_categorical(np.asarray(labels), len(classes))
    x = feats["ours"]

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t0)

    keras.utils.set_random_seed(0)
    head = build_head(x.shape[1], len(classes), 0.2, 1e-4)
    head.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    head.fit(x, y, epochs=1 + args.head_epochs, batch_size=args.batch_size, shuffle=True, verbose=0, callbacks=[timer])
    cached_epoch = float(np.median(timer.times[1:]))

    keras.utils.set_random_seed(0)
    head2 = build_head(x.shape[1], len(classes), 0.2, 1e-4)
    model = build_classifier(cfg, head2, backbone=extractor.get_layer("backbone"))
    model.get_layer("backbone").trainable = False
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    ds = image_dataset(paths, np.asarray(labels), image_size=cfg.size, batch_size=args.batch_size, shuffle=True)
    ds = ds.map(lambda im, lab: (im, keras.ops.one_hot(lab, len(classes))))
    timer2 = EpochTimer()
    model.fit(ds, epochs=2, verbose=0, callbacks=[timer2])
    frozen_epoch = timer2.times[-1]
    print(f"\nHead training, seconds per epoch ({n} samples, second epoch onwards; load average {load()}):")
    print(f"  baseline  same head through the frozen backbone on images: {frozen_epoch:8.3f}")
    print(f"  ours      head on cached features (head_training):         {cached_epoch:8.3f}")
    print(f"  speed-up: {frozen_epoch / cached_epoch:.0f}x  (target >= 20x)")


if __name__ == "__main__":
    main()
