"""Does head_training.exclude_label_issues help? On seeded PetImages sets (150 photos a class from
``--start``, 4 photos copied six ways, 20 photos moved into the wrong folder: tests/pipelines/audit/
seeded.py), run data_ingestion, feature_extraction and audit (a KedroSession on a temporary
project), then 5-fold cross-validation x 3 on train + val of a linear probe (standardised
features, logistic regression), trained with or without the photos the audit flagged, scored on
the TRUE labels of the held-out folds; then the same with every label right (the moves undone,
the audit run again on those labels), where excluding can only lose photos.

    python bench/exclude_label_issues.py                         # 3 sets at 128 px
    python bench/exclude_label_issues.py --size 224 --sets 450:11

The test split is never used. Writes only under a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", ROOT.parent / "shared")).resolve()
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))


def cv_accuracy(x, y_given, y_true, flagged, exclude: bool, seeds=(0, 1, 2)) -> float:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    acc = []
    for seed in seeds:
        for train, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y_given):
            keep = train[~flagged[train]] if exclude else train
            scaler = StandardScaler().fit(x[keep])
            model = LogisticRegression(C=0.1, max_iter=500).fit(scaler.transform(x[keep]), y_given[keep])
            acc.append((model.predict(scaler.transform(x[held])) == y_true[held]).mean())
    return float(np.mean(acc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--sets", nargs="*", default=["300:17", "600:5", "0:3"], help="start:seed of each seeded set")
    a = ap.parse_args()

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="exclude_label_issues_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"

    import numpy as np
    import pandas as pd

    from tests.conftest import KedroProject
    from tests.pipelines.audit.seeded import seed_photo_set
    from transfer_lab.params.audit import AuditParams
    from transfer_lab.pipelines.audit import nodes as audit_nodes

    weights = SHARED / "weights" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5"
    try:
        for spec in a.sets:
            start, seed = map(int, spec.split(":"))
            base = tmp / f"set_{start}_{seed}"
            src = {c: sorted((SHARED / "data" / "PetImages" / c).glob("*.jpg"))[start:start + 150] for c in ("Cat", "Dog")}
            seeded = seed_photo_set(src, base / "PetImages", n_originals=4, n_moved=20, seed=seed)
            project = KedroProject(base / "project")
            project.run(["data_ingestion", "feature_extraction", "audit"],
                        {"data.source": str(seeded.root), "data.labels": "species", "backbone.weights": str(weights),
                         "backbone.image_size": a.size, "feature_extraction.flip_augment": False})
            f = dict(np.load(project.out("data/04_feature/features.npz"), allow_pickle=True))
            names = [str(c) for c in f["class_names"]]
            issues = pd.read_csv(project.out("data/08_reporting/label_issues.csv"), keep_default_na=False)
            x = np.concatenate([f["train_features"], f["val_features"]])
            y = np.concatenate([f["train_labels"], f["val_labels"]])
            paths = np.concatenate([f["train_paths"], f["val_paths"]]).astype(str)
            truth = np.asarray([names.index(seeded.moved[p].lower()) if p in seeded.moved else v
                                for p, v in zip(paths, y)])
            flagged = np.isin(paths, issues["path"].astype(str).tolist())
            noisy = (cv_accuracy(x, y, truth, flagged, False), cv_accuracy(x, y, truth, flagged, True))

            # every label right: the audit again on the true labels
            clean = dict(f)
            for split in ("train", "val", "test"):
                clean[f"{split}_labels"] = np.asarray(
                    [names.index(seeded.moved[p].lower()) if p in seeded.moved else v
                     for p, v in zip(f[f"{split}_paths"].astype(str), f[f"{split}_labels"])], np.int32)
            _, clean_issues, _, _ = audit_nodes.audit_features(clean, pd.DataFrame(columns=audit_nodes.NEAR_COLUMNS),
                                                               AuditParams())
            clean_flagged = np.isin(paths, clean_issues["path"].astype(str).tolist())
            kept = (cv_accuracy(x, truth, truth, clean_flagged, False), cv_accuracy(x, truth, truth, clean_flagged, True))
            print(f"set {start}:{seed} at {a.size} px: {int(np.isin(paths, list(seeded.moved)).sum())} moved and "
                  f"{int(flagged.sum())} flagged in train+val; CV accuracy on the true labels "
                  f"{noisy[0]:.4f} -> {noisy[1]:.4f} excluding the flagged; with every label right "
                  f"({int(clean_flagged.sum())} flagged) {kept[0]:.4f} -> {kept[1]:.4f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
