"""The unfamiliar-photo flag (transfer_lab.models.unfamiliar), measured on photos it never saw.

Fits each score (knn, mahalanobis, msp, energy) on the training photos' cached features of a
cats-vs-dogs run, sets its threshold on the validation photos (<= 5% flagged), then prints the
share flagged of

- familiar photos it never saw: the run's test split, and Oxford-IIIT Pet photos (cats and dogs
  from another source, resized to 256 px: a harder familiar set);
- photos that are neither cat nor dog. ../shared holds none, so they come from the sample photos
  that Python packages ship: scikit-learn (china, flower), matplotlib (grace_hopper) and, with
  --skimage-data, scikit-image's data folder (astronaut, coffee, rocket, motorcycle, coins, moon,
  hubble, ...; chelsea is a cat and is left out) and its 200 LFW faces (25 x 25 grey, upscaled).
  Each photo also gives 4 random crops (30-70% of its side, seeded): other views of the same
  photos, not new photos, so the photo count is what the figure rests on.

Needs a species run first (in a copy of the project):
  kedro run --pipelines=data_ingestion,feature_extraction,head_training --params \
    "data.source=../shared/data/PetImages,data.labels=species,backbone.weights=../shared/weights/mobilenet_v2_1.0_imagenet_no_top.weights.h5"
then
  pip download --no-deps scikit-image==0.26.0 -d /tmp/w && unzip -q -j /tmp/w/*.whl 'skimage/data/*' -d /tmp/skdata
  python bench/unfamiliar.py --project PATH --skimage-data /tmp/skdata
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SKIMAGE_PHOTOS = ["astronaut.png", "brick.png", "camera.png", "cell.png", "clock_motion.png", "coffee.png",
                  "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
                  "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png"]


def package_photos(skimage_data: Path | None) -> list[tuple[str, bytes]]:
    """(name, file bytes) of the sample photos Python packages ship that are neither cat nor dog."""
    import matplotlib
    import sklearn

    files = [Path(sklearn.__file__).parent / "datasets" / "images" / n for n in ("china.jpg", "flower.jpg")]
    files.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    if skimage_data:
        files += [skimage_data / n for n in SKIMAGE_PHOTOS]
    return [(f.name, f.read_bytes()) for f in files if f.exists()]


def ood_sets(skimage_data: Path | None, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    from PIL import Image

    from transfer_lab.data.imaging import load_rgb

    rng = np.random.default_rng(seed)
    photos, crops = [], []
    for _, data in package_photos(skimage_data):
        full = load_rgb(data)
        photos.append(np.asarray(Image.fromarray(full).resize((size, size), Image.BILINEAR)))
        h, w = full.shape[:2]
        for _ in range(4):
            s = rng.uniform(0.3, 0.7)
            ch, cw = max(int(h * s), 16), max(int(w * s), 16)
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crops.append(np.asarray(Image.fromarray(full[y:y + ch, x:x + cw]).resize((size, size), Image.BILINEAR)))
    out = {"photos": np.stack(photos), "crops": np.stack(crops)}
    lfw = skimage_data / "lfw_subset.npy" if skimage_data else None
    if lfw and lfw.exists():
        faces = np.load(lfw)[:200]  # 25 x 25 grey in 0..1
        out["lfw_faces"] = np.stack([np.asarray(Image.fromarray((f * 255).astype(np.uint8)).convert("RGB")
                                                .resize((size, size), Image.BILINEAR)) for f in faces])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=ROOT, help="project folder of a cats-vs-dogs (species) run")
    ap.add_argument("--skimage-data", type=Path, default=None)
    ap.add_argument("--oxford", type=Path, default=ROOT.parent / "shared" / "data" / "oxford-iiit-pet" / "images")
    ap.add_argument("--n-oxford", type=int, default=600)
    ap.add_argument("--max-flagged", type=float, default=0.01,
                    help="the share of validation photos flagged for the default (knn, k=20) row")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--cache", type=Path, default=None, help="keep the evaluation sets' features in this .npz")
    args = ap.parse_args()

    import keras

    feats = dict(np.load(args.project / "data/04_feature/features.npz"))
    clf = keras.saving.load_model(args.project / "data/06_models/head_classifier.keras", compile=False)
    head = keras.saving.load_model(args.project / "data/06_models/head.keras", compile=False)
    size = int(clf.input_shape[1])
    pool = keras.Model(clf.inputs, clf.get_layer("pool").output)

    if args.cache and args.cache.exists():
        sets = dict(np.load(args.cache))
    else:
        sets = photo_sets(args, pool, size, feats)
        if args.cache:
            np.savez(args.cache, **sets)
    familiar = [s for s in sets if not s.startswith("ood")]
    ood = [s for s in sets if s.startswith("ood")]
    run(args, feats, head, sets, familiar, ood)


def photo_sets(args, pool, size, feats) -> dict[str, np.ndarray]:
    from transfer_lab.data.imaging import load_rgb
    from transfer_lab.models.predict import predict_array

    sets = {"test (cats/dogs)": feats["test_features"]}
    oxford = sorted(args.oxford.glob("*.jpg"))
    if oxford:
        pick = np.random.default_rng(1).choice(len(oxford), min(args.n_oxford, len(oxford)), replace=False)
        imgs = []
        for i in pick:
            try:
                imgs.append(load_rgb(oxford[i], size))
            except ValueError:
                pass
        sets["oxford pets (cats/dogs)"] = predict_array(pool, np.stack(imgs).astype(np.float32), batch_size=32)
    for name, arr in ood_sets(args.skimage_data, size).items():
        sets[f"ood {name}"] = predict_array(pool, arr.astype(np.float32), batch_size=32)
    return sets


def run(args, feats, head, sets, familiar, ood) -> None:
    from transfer_lab.models import unfamiliar

    results = {}
    kb = unfamiliar.head_weights(head)
    configs = [(m, kw, 0.05) for m, kw in [("knn", {"k": 1}), ("knn", {"k": 20}), ("mahalanobis", {}), ("msp", {}),
                                            ("energy", {})]]
    configs += [("knn", {"k": 1}, 0.02), ("mahalanobis", {}, 0.02), ("knn", {"k": 20}, args.max_flagged)]
    for method, kw, share in configs:
        stats = unfamiliar.fit(feats["train_features"], feats["train_labels"], feats["val_features"], method=method,
                               head=kb, max_flagged=share, **kw)
        row = {"val": float(stats["val_flagged"])}
        for name, x in sets.items():
            row[name] = float(unfamiliar.flag(stats, x)[0].mean())
        all_ood = np.concatenate([unfamiliar.flag(stats, sets[s])[0] for s in ood])
        row["ood all"] = float(all_ood.mean())
        results[f"{method}{kw.get('k', '')}@{share:g}"] = row

    counts = {name: len(x) for name, x in sets.items()}
    print(f"thresholds on {len(feats['val_features'])} validation photos (method@share flagged there); "
          f"fitted on {len(feats['train_features'])} training photos")
    print("share flagged unfamiliar (n): " + ", ".join(f"{k} ({v})" for k, v in counts.items()))
    cols = ["val"] + familiar + ood + ["ood all"]
    print(f"{'method':<18}" + "".join(f"{c[:22]:>24}" for c in cols))
    for m, row in results.items():
        print(f"{m:<18}" + "".join(f"{row[c]:>24.3f}" for c in cols))
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "results": results}, indent=2))


if __name__ == "__main__":
    main()
