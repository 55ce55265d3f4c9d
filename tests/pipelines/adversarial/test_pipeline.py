"""The adversarial pipeline end to end through a real KedroSession, on a tiny classifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.pipelines.adversarial.test_attacks import SIZE, tiny_conv_model


@pytest.fixture
def tiny_project(kedro_project, make_image):
    """A tiny 2-class classifier, its class names and a manifest of generated photos."""
    rows = []
    for i in range(12):
        label = "cat" if i % 2 else "dog"
        p = make_image(kedro_project.out(f"photos/{label}_{i}.jpg"), size=(48, 40), seed=i)
        rows.append({"path": str(p), "label": label, "split": "test" if i < 8 else "train", "duplicate_of": "", "species": label})
    pd.DataFrame(rows).to_csv(kedro_project.out("data/03_primary/manifest.csv"), index=False)
    tiny_conv_model().save(kedro_project.out("data/06_models/classifier.keras"))
    kedro_project.out("data/06_models/class_names.json").write_text(json.dumps(["cat", "dog"]))
    return kedro_project


BASE = {
    "adversarial.model": "classifier",
    "adversarial.target": "cat",
    "adversarial.epsilon": 16,
    "adversarial.steps": 12,
    "adversarial.max_panels": 2,
    "adversarial.transfer": None,
    "adversarial.robustness.budgets": [0, 0.5, 8],
    "adversarial.robustness.steps": 4,
}


def test_pipeline_writes_pngs_that_still_fool_the_model(tiny_project):
    from transfer_lab.data.imaging import load_rgb

    tiny_project.run("adversarial", BASE)
    m = json.loads(tiny_project.out("data/08_reporting/adversarial.json").read_text())
    table = pd.read_csv(tiny_project.out("data/08_reporting/adversarial_images.csv"))
    # every test dog (4 of the 8 test images) was attacked
    assert m["n_images"] == 4 and len(table) == 4 and set(table["label"]) == {"dog"}
    assert m["linf_max"] <= 16 and m["l2_mean"] > 0
    assert set(m["robust_accuracy"]) == {"0", "0.5", "8"}
    assert m["robust_accuracy"]["0"] == m["robust_accuracy"]["0.5"]  # no whole-pixel change fits in 0.5
    assert m["robust_accuracy"]["8"] <= m["robust_accuracy"]["0"]
    # the success rate is what the saved files do: check it independently
    from keras.saving import load_model

    model = load_model(tiny_project.out("data/06_models/classifier.keras"))
    folder = tiny_project.out("data/07_model_output/adversarial_images")
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 4
    back = np.stack([load_rgb(p).astype(np.float32) for p in pngs])
    assert back.shape[1:] == (SIZE, SIZE, 3)
    pred = np.argmax(model.predict(back, verbose=0), axis=1)
    assert m["success_rate"] == pytest.approx(float(np.mean(pred == 0)))
    assert m["success_rate"] == m["success_rate_in_loop"]
    originals = np.stack([load_rgb(p, SIZE).astype(np.float32) for p in table["path"]])
    assert np.abs(back - originals).max() <= 16
    figs = {p.name for p in tiny_project.out("data/08_reporting/adversarial").glob("*.png")}
    assert {"grid.png", "robust_accuracy.png"} <= figs and len(figs) == 4


@pytest.mark.parametrize(
    "override, message",
    [
        ({"adversarial.epsilon": -2}, "adversarial.epsilon"),
        ({"adversarial.epsilon": 1000}, "whole 0-255 pixel range"),
        ({"adversarial.target": "kat"}, "Near matches: cat"),
        ({"adversarial.source": "NOTES"}, "not a usable image"),
    ],
)
def test_bad_parameters_fail_in_the_first_node(tiny_project, override, message):
    notes = tiny_project.out("NOTES")
    notes.write_text("this is not an image\n")
    if override.get("adversarial.source") == "NOTES":
        override = {"adversarial.source": str(notes)}
    with pytest.raises(Exception, match=message):
        tiny_project.run("adversarial", BASE | override)
    assert not tiny_project.out("data/08_reporting/adversarial.json").exists()


@pytest.mark.slow
def test_imagenet_model_dogs_to_cats_with_transfer(kedro_project, shared_dir):
    """Real photos, the ../shared ImageNet MobileNetV2 (a slice: 6 dogs, 4 cats at 128 px)."""
    import glob

    rows = []
    for species, n in (("dog", 6), ("cat", 4)):
        for p in sorted(glob.glob(str(shared_dir / f"data/PetImages/{species.capitalize()}/*.jpg")))[:n]:
            rows.append({"path": p, "label": species, "split": "test", "duplicate_of": "", "species": species})
    pd.DataFrame(rows).to_csv(kedro_project.out("data/03_primary/manifest.csv"), index=False)
    w = shared_dir / "weights"
    kedro_project.run("adversarial", {
        "backbone.classifier_weights": str(w / "mobilenet_v2_1.0_imagenet.weights.h5"),
        "backbone.imagenet_labels": str(w / "imagenet_labels.txt"),
        "backbone.image_size": 128,
        "adversarial.model": "imagenet",
        "adversarial.target": "cat",
        "adversarial.epsilon": 2,
        "adversarial.max_panels": 1,
        "adversarial.robustness.budgets": [0, 2],
        "adversarial.robustness.steps": 5,
        "adversarial.transfer.weights": str(w / "mobilenet_0.25_imagenet.weights.h5"),
        "adversarial.transfer.labels": str(w / "imagenet_labels.txt"),
    })
    m = json.loads(kedro_project.out("data/08_reporting/adversarial.json").read_text())
    assert m["n_images"] == 6  # the dogs only
    assert m["success_rate"] >= 5 / 6
    assert m["linf_max"] <= 2
    assert m["target_prob_after"] > m["target_prob_before"]
    assert m["transfer"]["n_images"] >= 5 and 0 <= m["transfer"]["rate"] <= 1
    assert m["robust_accuracy"]["2"] <= m["robust_accuracy"]["0"]
