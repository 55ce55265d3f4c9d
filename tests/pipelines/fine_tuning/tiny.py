"""What head_training leaves for fine_tuning, tiny: a manifest of generated photos (train 8, val
4, test 2 per class), a classifier (random MobileNetV2 0.35 at 32 px + a 2-class head), its
class names and config, and head metrics. In memory, or written into a project's data/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BACKBONE = {"name": "mobilenet_v2", "weights": "none", "image_size": 32, "alpha": 0.35}
CLASSES = ["cat", "dog"]


def tiny_inputs(photos: Path, make_image) -> dict[str, Any]:
    """``{"manifest@csv", "head_classifier@keras", "class_names@json", "classifier_config",
    "head_metrics"}``, keyed by their catalog names."""
    import keras
    import pandas as pd

    from transfer_lab.models.backbones import build_classifier, build_head
    from transfer_lab.params.backbone import BackboneParams

    rows = []
    for split, n in (("train", 8), ("val", 4), ("test", 2)):
        for cls, color in zip(CLASSES, ((200, 60, 40), (40, 80, 200))):
            for i in range(n):
                p = make_image(photos / split / cls / f"{i}.png", size=(40, 40), fmt="PNG", color=color)
                rows.append({"path": str(p), "label": cls, "split": split, "sha256": f"{split}{cls}{i}",
                             "width": 40, "height": 40, "format": "PNG", "n_bytes": p.stat().st_size,
                             "duplicate_of": "", "species": cls})
    keras.utils.set_random_seed(0)
    model = build_classifier(BackboneParams.model_validate(BACKBONE), build_head(1280, len(CLASSES), 0.0))
    return {
        "manifest@csv": pd.DataFrame(rows),
        "head_classifier@keras": model,
        "class_names@json": list(CLASSES),
        "classifier_config": {"backbone": BACKBONE, "image_size": 32, "class_names": list(CLASSES)},
        "head_metrics": {"accuracy": 0.5},
    }


def write_tiny_inputs(project: Path, photos: Path, make_image) -> None:
    """The same, where the catalog (conf/base) reads them in ``project``."""
    inputs = tiny_inputs(photos, make_image)
    data = project / "data"
    for sub in ("03_primary", "06_models", "08_reporting"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    inputs["manifest@csv"].to_csv(data / "03_primary" / "manifest.csv", index=False)
    inputs["head_classifier@keras"].save(data / "06_models" / "head_classifier.keras")
    (data / "06_models" / "class_names.json").write_text(json.dumps(inputs["class_names@json"]))
    (data / "06_models" / "classifier_config.json").write_text(json.dumps(inputs["classifier_config"]))
    (data / "08_reporting" / "head_metrics.json").write_text(json.dumps(inputs["head_metrics"]))
