"""The adversarial pipeline: nodes and the whole pipeline with Kedro's SequentialRunner over an
in-memory catalog (tiny classifier, generated photos, the PNGs written and read back); through a
real KedroSession (parameter validation, the catalog, "run this first"; marked slow, as
integration tests are), and a run on the real ImageNet weights (slow)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from tests.pipelines.adversarial.test_attacks import SIZE, tiny_conv_model
from transfer_lab.io.datasets import Deferred, ImageFolderDataset, KerasModelDataset
from transfer_lab.models.choice import ModelChoiceError
from transfer_lab.params.adversarial import AdversarialParams
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.pipelines.adversarial import create_pipeline
from transfer_lab.pipelines.adversarial.nodes import resolve_classes

PARAMS = dict(model="head", target="cat", epsilon=16, steps=12, max_panels=2, transfer=None,
              robustness={"budgets": [0, 0.5, 8], "steps": 4})


def deferred(value=None, missing=None) -> Deferred:
    """A catalog entry not loaded yet: ``value`` (kept as it is), or a missing model file."""
    if missing is not None:
        return Deferred(KerasModelDataset(str(missing), missing_hint="Run `kedro run --pipelines=fine_tuning` first."))
    return Deferred(MemoryDataset(value, copy_mode="assign"))


def manifest(tmp_path, make_image) -> pd.DataFrame:
    rows = []
    for i in range(12):
        label = "cat" if i % 2 else "dog"
        p = make_image(tmp_path / f"photos/{label}_{i}.jpg", size=(48, 40), seed=i)
        rows.append({"path": str(p), "label": label, "split": "test" if i < 8 else "train", "duplicate_of": "",
                     "species": label})
    # an extra copy of a test photo: left out (transfer_lab.data.manifest.without_duplicates)
    rows.append({**rows[0], "duplicate_of": rows[0]["path"]})
    return pd.DataFrame(rows)


@pytest.fixture
def inputs(tmp_path, make_image):
    model = tiny_conv_model()
    return {
        "params:adversarial": AdversarialParams(**PARAMS),
        "params:backbone": BackboneParams(),
        "manifest@csv": manifest(tmp_path, make_image),
        "class_names@lazy": deferred(["cat", "dog"]),
        "head_classifier@lazy": deferred(model),
        "finetuned_classifier@lazy": deferred(missing=tmp_path / "finetuned_classifier.keras"),
    }, model


def run(data: dict, tmp_path) -> dict:
    catalog = DataCatalog({k: MemoryDataset(v, copy_mode="assign") for k, v in data.items()})
    catalog["adversarial_images"] = ImageFolderDataset(str(tmp_path / "adversarial_images"))
    out = {k: MemoryDataset(copy_mode="assign") for k in ("adversarial_metrics", "adversarial_table", "adversarial_figures")}
    for k, ds in out.items():
        catalog[k] = ds
    SequentialRunner().run(create_pipeline(), catalog)
    return {k: ds.load() for k, ds in out.items()}


def test_pipeline_writes_pngs_that_still_fool_the_model(inputs, tmp_path):
    from transfer_lab.data.imaging import load_rgb

    data, model = inputs
    out = run(data, tmp_path)
    m, table, figures = out["adversarial_metrics"], out["adversarial_table"], out["adversarial_figures"]
    # every test dog (4 of the 8 test images; the duplicate row left out) was attacked
    assert m["n_images"] == 4 and len(table) == 4 and set(table["label"]) == {"dog"}
    assert m["model"] == "head" and m["target"] == "cat"
    assert m["linf_max"] <= 16 and m["l2_mean"] > 0
    assert set(m["robust_accuracy"]) == {"0", "0.5", "8"}
    assert m["robust_accuracy"]["0"] == m["robust_accuracy"]["0.5"]  # no whole-pixel change fits in 0.5
    assert m["robust_accuracy"]["8"] <= m["robust_accuracy"]["0"]
    # the success rate is what the saved files do: check it independently
    pngs = sorted((tmp_path / "adversarial_images").glob("*.png"))
    assert len(pngs) == 4
    back = np.stack([load_rgb(p).astype(np.float32) for p in pngs])
    assert back.shape[1:] == (SIZE, SIZE, 3)
    pred = np.argmax(model.predict(back, verbose=0), axis=1)
    assert m["success_rate"] == pytest.approx(float(np.mean(pred == 0)))
    assert m["success_rate"] == m["success_rate_in_loop"]
    resize = data["params:backbone"].resize  # the attack decodes as the classifier was trained
    originals = np.stack([load_rgb(p, SIZE, resize=resize).astype(np.float32) for p in table["path"]])
    assert np.abs(back - originals).max() <= 16
    assert {"grid", "robust_accuracy"} <= set(figures) and len(figures) == 4


def test_first_node_resolves_classes_and_refuses_what_the_model_lacks(inputs, tmp_path):
    data, _ = inputs
    args = dict(backbone=data["params:backbone"], manifest=data["manifest@csv"],
                class_names=data["class_names@lazy"], finetuned=data["finetuned_classifier@lazy"],
                head=data["head_classifier@lazy"])
    classes = resolve_classes(AdversarialParams(**PARAMS), **args)
    assert classes == {"names": ["cat", "dog"], "groups": {"cat": [0], "dog": [1]}, "target_set": [0],
                       "source_files": None}
    with pytest.raises(ValueError, match="Unknown class 'kat' in adversarial.target. Near matches: cat"):
        resolve_classes(AdversarialParams(**{**PARAMS, "target": "kat"}), **args)
    notes = tmp_path / "NOTES"
    notes.write_text("this is not an image\n")
    with pytest.raises(ValueError, match="not a usable image"):
        resolve_classes(AdversarialParams(**{**PARAMS, "source": str(notes)}), **args)
    # the default model (finetuned) does not exist: fails at once, naming the pipeline to run
    with pytest.raises(ModelChoiceError, match=r"adversarial.model=finetuned: .*kedro run --pipelines=fine_tuning.*"
                                               r"--params adversarial.model=head"):
        resolve_classes(AdversarialParams(**{**PARAMS, "model": "finetuned"}), **args)


@pytest.fixture
def tiny_project(kedro_project, make_image):
    """A project copy with head_training's tiny classifier and a manifest, but no fine-tuned model."""
    manifest(kedro_project.path, make_image).to_csv(kedro_project.out("data/03_primary/manifest.csv"), index=False)
    tiny_conv_model().save(kedro_project.out("data/06_models/head_classifier.keras"))
    kedro_project.out("data/06_models/class_names.json").write_text(json.dumps(["cat", "dog"]))
    return kedro_project


@pytest.mark.slow
def test_kedro_run_without_the_finetuned_model_fails_at_once_naming_fine_tuning(tiny_project):
    with pytest.raises(Exception, match=r"kedro run --pipelines=fine_tuning"):
        tiny_project.run("adversarial", {"adversarial.transfer": None})
    assert not tiny_project.out("data/07_model_output/adversarial_images").exists()


@pytest.mark.slow
@pytest.mark.parametrize("override, message", [
    ({"adversarial.epsilon": 1000}, "whole 0-255 pixel range"),
    ({"adversarial.epsilonn": 2}, r"Did you mean adversarial.epsilon\?"),
])
def test_kedro_refuses_bad_parameters_before_any_node(tiny_project, override, message):
    with pytest.raises(Exception, match=message):
        tiny_project.run("adversarial", {"adversarial.model": "head", "adversarial.transfer": None} | override)
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


def test_robustness_budgets_attack_only_what_smaller_budgets_left_standing(inputs, monkeypatch):
    from transfer_lab.models import attacks
    from transfer_lab.pipelines.adversarial.nodes import resolve_classes, robustness_curve

    data, _ = inputs
    p = AdversarialParams(**{**PARAMS, "robustness": {"budgets": [0, 1, 2, 4, 8, 16], "steps": 4, "max_images": None}})
    classes = resolve_classes(p, data["params:backbone"], data["manifest@csv"], data["class_names@lazy"],
                              data["finetuned_classifier@lazy"], data["head_classifier@lazy"])
    attacked = []
    run_attack = attacks.PixelAttack.run

    def counting(self, x, mask, **kw):
        attacked.append(len(x))
        return run_attack(self, x, mask, **kw)

    monkeypatch.setattr(attacks.PixelAttack, "run", counting)
    curve = robustness_curve(classes, p, data["params:backbone"], data["manifest@csv"],
                             data["finetuned_classifier@lazy"], data["head_classifier@lazy"])
    n, acc = curve["n_images"], curve["accuracy"]
    assert all(a >= b for a, b in zip(acc, acc[1:]))  # never more robust with a larger budget
    # each budget attacked exactly the images still robust at the budget before it
    standing = [round(a * n) for a in acc]
    assert attacked and attacked[0] == standing[0] > 0
    assert attacked == [s for s in standing[:-1] if s > 0][:len(attacked)]
