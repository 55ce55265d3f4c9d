"""Explanations on tiny models: maps' shape and range, Grad-CAM through a nested backbone finds the
region the class depends on, Integrated Gradients' completeness, the deletion test and the sanity
check on constructed cases, and the parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from transfer_lab.models import explain as ex
from transfer_lab.models.gradients import backend, to_numpy, tracing_count
from transfer_lab.params.explain import ExplainParams

from .tiny import SIZE, grey_with_red_patch, random_model, redness_model

CONF = Path(__file__).resolve().parents[3] / "conf" / "base"


@pytest.fixture(scope="module")
def red():
    return redness_model()


@pytest.fixture(scope="module")
def tiny():
    return random_model()


@pytest.mark.parametrize("method", ex.METHODS)
def test_maps_have_the_input_size_and_lie_in_0_1(tiny, method):
    images = np.random.default_rng(1).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    result = ex.explain(tiny, images, method, steps=4, batch_size=2)
    assert result.maps.shape == (3, SIZE, SIZE) and result.maps.dtype == np.float32
    assert result.maps.min() >= 0.0 and result.maps.max() == pytest.approx(1.0)
    probs = np.asarray(tiny(images))
    np.testing.assert_array_equal(result.classes, probs.argmax(-1))
    np.testing.assert_allclose(result.probabilities, probs.max(-1), rtol=1e-4)


def test_gradcam_is_traced_once_and_takes_any_size_and_batch(tiny):
    e = ex.explainer(tiny)
    assert ex.explainer(tiny) is e  # cached
    rng = np.random.default_rng(2)
    e.gradcam(rng.uniform(0, 255, (5, SIZE, SIZE, 3)), batch_size=2)  # batches of 2 and 1
    e.gradcam(rng.uniform(0, 255, (3, SIZE, SIZE, 3)), batch_size=3)
    # TensorFlow: one trace for every batch size; JAX: one per batch size (2, then 3; the last 1 is padded)
    assert tracing_count(e._cam) == (1 if backend() == "tensorflow" else 2)
    single = ex.gradcam(tiny, rng.uniform(0, 255, (50, 70, 3)))  # another size: resized to the input
    assert single.shape == (SIZE, SIZE)


def test_gradcam_highlights_the_region_the_class_depends_on(red):
    images, corners = grey_with_red_patch(n=4)
    maps = ex.gradcam(red, images)
    assert (np.asarray(red(images)).argmax(-1) == 1).all()  # "red" predicted
    for saliency, (r, c) in zip(maps, corners):
        inside = np.zeros_like(saliency, dtype=bool)
        inside[r:r + 8, c:c + 8] = True
        assert saliency[inside].mean() > 3 * saliency[~inside].mean()
        peak = np.unravel_index(saliency.argmax(), saliency.shape)
        assert r - 4 <= peak[0] < r + 12 and c - 4 <= peak[1] < c + 12


def test_gradcam_of_a_layer_inside_the_backbone_and_of_a_top_level_layer(red):
    images, corners = grey_with_red_patch(n=2, seed=3)
    inner = ex.gradcam(red, images, layer="conv_a")  # full-resolution layer inside the nested backbone
    r, c = corners[0]
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[r:r + 8, c:c + 8] = True
    assert inner[0][inside].mean() > 3 * inner[0][~inside].mean()
    assert ex.gradcam(red, images, layer="preprocess").shape == (2, SIZE, SIZE)


def test_an_unknown_or_flat_layer_is_refused_with_near_matches(red):
    with pytest.raises(ex.ExplainError, match="conv_a"):
        ex.gradcam(red, np.zeros((1, SIZE, SIZE, 3)), layer="conv_aa")
    with pytest.raises(ex.ExplainError, match="no spatial"):
        ex.gradcam(red, np.zeros((1, SIZE, SIZE, 3)), layer="logits")


def test_gradcam_blurgrad_puts_the_evidence_on_the_patch_and_passes_the_deletion_test(red):
    images, corners = grey_with_red_patch(n=6, seed=3)
    e = ex.explainer(red)
    result = e.gradcam_blurgrad(images, batch_size=4)
    e.gradcam_blurgrad(images[:3], batch_size=3)
    # one traced pass gives both factors (JAX: one per batch size, 4 then 3)
    assert tracing_count(e._both) == (1 if backend() == "tensorflow" else 2)
    assert result.method == "gradcam_blurgrad" and (result.classes == 1).all()
    for saliency, (r, c) in zip(result.maps, corners):
        near = np.zeros_like(saliency, dtype=bool)
        near[max(r - 2, 0):r + 10, max(c - 2, 0):c + 10] = True  # the patch and its blurred rim
        assert saliency[near].sum() > 0.9 * saliency.sum()
    deletion = ex.deletion_test(red, images, result.maps, fraction=0.1, seed=0)
    assert deletion["beats"].all()
    assert ex.explain(red, images).method == ex.DEFAULT_METHOD == "gradcam_blurgrad"  # the saved default


def test_a_chosen_class_is_explained(red):
    images, _ = grey_with_red_patch(n=2)
    result = ex.explainer(red).gradcam(images, classes=0)
    assert (result.classes == 0).all()
    # Class 0 is evidence against red: Grad-CAM's ReLU leaves no positive evidence, the maps are flat.
    assert result.maps.max() == 0.0


def test_integrated_gradients_completeness(tiny):
    images = np.random.default_rng(4).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    attributions = ex.explainer(tiny).integrated_gradients(images, steps=64, raw=True)
    logits = to_numpy(ex.explainer(tiny).net(images)[1])
    base = to_numpy(ex.explainer(tiny).net(np.zeros_like(images))[1])
    cls = np.asarray(tiny(images)).argmax(-1)
    want = logits[np.arange(2), cls] - base[np.arange(2), cls]
    got = attributions.reshape(2, -1).sum(-1)
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.02 * np.abs(want).max())


def test_deletion_test_tells_a_salient_map_from_a_misleading_one(red):
    images, corners = grey_with_red_patch(n=6, patch=4, seed=5, noise=0.0)
    good = np.zeros((6, SIZE, SIZE), np.float32)
    for i, (r, c) in enumerate(corners):
        good[i, r:r + 4, c:c + 4] = 1.0
    res = ex.deletion_test(red, images, good, classes=1, blur_radius=3)  # the "red" class
    np.testing.assert_allclose(res["probability"], np.asarray(red(images))[:, 1], rtol=1e-5)
    assert res["beats"].all()
    assert (res["salient_drop"] > 0).all()
    bad = ex.deletion_test(red, images, 1.0 - good, classes=1, blur_radius=3)  # the patch ranked last
    assert (bad["salient_drop"] <= 1e-6).all()  # deleting elsewhere takes no evidence away
    assert bad["beats"].mean() < res["beats"].mean()


def test_overlay_is_a_png_ready_image_of_the_photo_size():
    photo = np.full((40, 60, 3), 100, np.uint8)
    saliency = np.zeros((32, 32), np.float32)
    saliency[:, 16:] = 1.0
    out = ex.overlay(photo, saliency)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[:, :10], out[:, -10:])  # hot and cold halves differ


def test_randomized_copy_changes_the_head_and_top_blocks_only(tiny):
    copy, names = ex.randomized_copy(tiny, blocks=1, seed=0)
    assert "logits" in names and "conv_3" in names and "conv_1" not in names
    before = ex.backbone_of(tiny).get_layer("conv_1").get_weights()[0]
    after = ex.backbone_of(copy).get_layer("conv_1").get_weights()[0]
    np.testing.assert_array_equal(before, after)
    assert not np.allclose(tiny.get_layer("logits").get_weights()[0], copy.get_layer("logits").get_weights()[0])
    images = np.random.default_rng(6).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    maps = ex.gradcam(tiny, images)
    check = ex.sanity_check(tiny, images, maps, blocks=1)
    assert check["correlations"].shape == (2,) and np.isfinite(check["correlations"]).all()
    assert ex.spearman(maps[0], maps[0]) == pytest.approx(1.0)
    assert ex.spearman(maps[0], -maps[0]) == pytest.approx(-1.0)
    assert ex.spearman(maps[0], np.zeros_like(maps[0])) == 0.0  # a flat map orders nothing


def test_a_model_that_is_not_a_chain_is_refused():
    import keras

    inp = keras.Input((SIZE, SIZE, 3))
    a = keras.layers.Conv2D(2, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(2, 3, padding="same", name="b")(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ex.ExplainError, match="chain"):
        ex.explanation_model(model, "a")


# ------------------------------------------------------------------------------------------- params


def test_defaults_are_the_yaml_defaults():
    conf = yaml.safe_load((CONF / "parameters_explain.yml").read_text())["explain"]
    assert ExplainParams.model_validate(conf) == ExplainParams()


@pytest.mark.parametrize("bad, says", [
    ({"method": "lime"}, "explain.method"),
    ({"model": "classifier"}, "old name"),
    ({"source": "/no/such/folder"}, "explain.source"),
    ({"deletion_fraction": 1.5}, "explain.deletion_fraction"),
    ({"steps": 0}, "explain.steps"),
    ({"metod": "gradcam"}, "Did you mean explain.method"),
])
def test_a_wrong_value_is_refused_naming_the_key(bad, says):
    with pytest.raises(ValidationError, match=says):
        ExplainParams.model_validate(bad)


def test_command_line_values_are_taken(tmp_path):
    p = ExplainParams.model_validate({"source": str(tmp_path), "target": "3", "max_images": "null", "steps": "8",
                                      "method": "IG", "faithfulness": "false"})
    assert (p.source, p.target, p.max_images, p.steps, p.method, p.faithfulness) == (
        str(tmp_path.resolve()), 3, None, 8, "integrated_gradients", False)
    assert ExplainParams.model_validate({"target": "cat"}).target == "cat"


def test_deletion_is_measured_in_log_odds_so_a_saturated_model_still_tells_salient_from_random():
    sure = redness_model()
    dense = sure.get_layer("logits")
    w, b = dense.get_weights()
    dense.set_weights([w * 50.0, b])  # logits in the hundreds: float32 probabilities are exactly 0 or 1
    images, corners = grey_with_red_patch(n=6, patch=4, seed=5, noise=0.0)
    assert (np.asarray(sure(images))[:, 1] == 1.0).all()
    good = np.zeros((6, SIZE, SIZE), np.float32)
    for i, (r, c) in enumerate(corners):
        good[i, r:r + 4, c:c + 4] = 1.0
    res = ex.deletion_test(sure, images, good, classes=1, blur_radius=3, seed=0)
    assert res["beats"].all() and (res["salient_drop"] > 1.0).all()


def test_log_odds_from_logits_and_from_probabilities_agree():
    z = np.array([[2.0, 0.0, 1.0], [0.0, 5.0, -1.0], [300.0, 0.0, -4.0]])
    c = np.array([0, 1, 0])
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = np.log(p[:2][np.arange(2), c[:2]] / (1 - p[:2][np.arange(2), c[:2]]))
    got = ex.log_odds(z, c)
    np.testing.assert_allclose(got[:2], want, rtol=1e-9)
    assert got[2] == pytest.approx(300.0 - np.log(1 + np.exp(-4.0)))  # no rounding of p to 1
    np.testing.assert_allclose(ex.log_odds(p[:2], c[:2]), want, rtol=1e-6)
