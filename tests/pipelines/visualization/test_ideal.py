"""Ideal images: loss pieces with known values, range, the optimisation on a tiny model, bad
parameters; the pipeline in-process on a tiny classifier; one slow run on the real weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transfer_lab.models import ideal
from transfer_lab.models.ideal import IdealConfig, IdealError


def tiny_model(n_classes: int = 4, size: int = 32, seed: int = 0):
    """0-255 in, probabilities out, with a ``logits`` layer (the project's model contract); random
    convolutions, weights=None style."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probs, name="tiny")


def colour_model(size: int = 32):
    """Three classes "red", "green", "blue": a 3x3 convolution (a blur) then mean colour minus the
    mean over channels, so the classes compete and the ideal "blue" is known to be blue."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    head = keras.layers.Dense(3, name="logits")
    probs = keras.layers.Activation("softmax", name="probabilities")(head(x))
    model = keras.Model(inputs, probs, name="colour")
    kernel = np.zeros((3, 3, 3, 3), "float32")
    for c in range(3):
        kernel[:, :, c, c] = 1 / 9
    conv.set_weights([kernel])
    head.set_weights([(3.0 * (np.eye(3) - 1 / 3)).astype("float32"), np.zeros(3, "float32")])
    return model


def test_total_variation_known_values():
    flat = np.full((1, 9, 7, 3), 123.0, np.float32)
    assert float(ideal.total_variation(flat)[0]) == 0.0
    assert ideal.tv_per_pixel(flat[0]) == 0.0
    yy, xx = np.mgrid[:8, :8]
    checker = np.repeat((((yy + xx) % 2) * 255.0)[:, :, None], 3, axis=2).astype(np.float32)
    assert float(ideal.total_variation(checker)[0]) == pytest.approx(510.0)
    assert ideal.tv_per_pixel(checker) == pytest.approx(510.0)
    # vertical stripes of width 1: only the horizontal differences count
    stripes = np.repeat(((xx % 2) * 100.0)[:, :, None], 3, axis=2).astype(np.float32)
    assert ideal.tv_per_pixel(stripes) == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (16, 12, 3)).astype(np.float32)
    assert float(ideal.total_variation(noise)[0]) == pytest.approx(ideal.tv_per_pixel(noise), rel=1e-5)
    assert float(ideal.l2(np.full((4, 4, 3), 127.5, np.float32))[0]) == pytest.approx(0.0)
    assert float(ideal.l2(np.zeros((4, 4, 3), np.float32))[0]) == pytest.approx(0.25)


@pytest.mark.parametrize("fourier", [True, False])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_parameterization_stays_in_range_and_inverts(fourier, decorrelate):
    p = ideal.Parameterization((24, 20), fourier=fourier, decorrelate=decorrelate, seed=1)
    # huge variables: the sigmoid still keeps every pixel inside 0-255
    p.variable.assign(p.variable * 1e4)
    img = p.image().numpy()
    assert img.shape == (1, 24, 20, 3)
    assert img.min() >= 0.0 and img.max() <= 255.0 and img.max() - img.min() > 100
    target = np.random.default_rng(2).uniform(20, 235, (24, 20, 3)).astype(np.float32)
    p.assign_image(target)
    np.testing.assert_allclose(p.image().numpy()[0], target, atol=0.05)


def test_transforms_keep_shape_and_pass_gradients():
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(0)
    x = tf.Variable(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32))
    for t in (ideal.jitter(4), ideal.scale(0.8, 1.2), ideal.rotate(15)):
        with tf.GradientTape() as tape:
            y = t(x, rng)
            loss = tf.reduce_sum(y[:, 8:24, 8:24, 0])
        assert y.shape == x.shape
        grad = tape.gradient(loss, x)
        assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
    # jitter(0) and rotate(0) are the identity
    np.testing.assert_array_equal(ideal.jitter(0)(x, rng).numpy(), x.numpy())
    np.testing.assert_array_equal(ideal.rotate(0)(x, rng).numpy(), x.numpy())


def test_target_probability_rises_on_a_tiny_model():
    from transfer_lab.models.backbones import logits_model

    model = colour_model()
    logits = logits_model(model)
    grey = np.full((1, 32, 32, 3), 127.5, np.float32)
    before = float(np.asarray(model(grey))[0, 2])
    assert before == pytest.approx(1 / 3, abs=1e-4)
    cfg = IdealConfig(steps=40, learning_rate=0.5, jitter=2, scale=(0.95, 1.05), rotate=5, regularizers={"total_variation": 0.01})
    res = ideal.generate(logits, 2, cfg, progress=False)
    assert res.image.dtype == np.uint8 and res.image.shape == (32, 32, 3)
    after = float(np.asarray(model(res.image[None].astype(np.float32)))[0, 2])
    assert after > 0.9 > before
    mean = res.image.reshape(-1, 3).mean(axis=0)
    assert mean[2] > mean[0] + 50 and mean[2] > mean[1] + 50  # the ideal "blue" is blue
    assert res.probability == pytest.approx(after, abs=1e-4)
    assert res.tv_per_pixel == pytest.approx(ideal.tv_per_pixel(res.image))
    assert res.history["logit"][-1] > res.history["logit"][0]
    # same seed, same image
    again = ideal.generate(logits, 2, cfg, progress=False)
    np.testing.assert_array_equal(again.image, res.image)
    # octaves (coarse to fine) and the pixel parameterisation end at the model's size too
    octave = ideal.generate(logits, 1, IdealConfig(steps=30, octaves=2, parameterization="pixel", learning_rate=1.0, jitter=2,
                                                   regularizers={"total_variation": 0.01}), progress=False)
    assert octave.image.shape == (32, 32, 3) and octave.probability > 0.9


def test_group_target_raises_the_summed_probability():
    from transfer_lab.models.backbones import logits_model

    model = colour_model()
    res = ideal.generate(logits_model(model), [0, 1], IdealConfig(steps=30, learning_rate=0.5, jitter=2, regularizers={"total_variation": 0.01}),
                         progress=False)
    probs = np.asarray(model(res.image[None].astype(np.float32)))[0]
    assert res.probability == pytest.approx(probs[0] + probs[1], abs=1e-4)
    assert res.probability > 0.9 > 2 / 3  # above the grey image's 2/3
    with pytest.raises(IdealError, match="out of range"):
        ideal.generate(logits_model(model), [5], IdealConfig(steps=1), progress=False)


def test_tv_weight_makes_images_smoother():
    from transfer_lab.models.backbones import logits_model

    logits = logits_model(tiny_model(seed=3))
    common = dict(steps=40, learning_rate=0.5, parameterization="pixel", decorrelate_colour=False, jitter=0, scale=(1.0, 1.0), rotate=0)
    rough = ideal.generate(logits, 0, IdealConfig(regularizers={"total_variation": 0.0}, **common), progress=False)
    smooth = ideal.generate(logits, 0, IdealConfig(regularizers={"total_variation": 0.5}, **common), progress=False)
    assert smooth.tv_per_pixel < 0.5 * rough.tv_per_pixel


def test_bad_parameters_fail_with_clear_messages():
    with pytest.raises(IdealError, match=r"visualization.steps .*at least 1"):
        IdealConfig.from_params({"steps": 0})
    with pytest.raises(IdealError, match=r"regularizers.tv .*known: total_variation, l2"):
        IdealConfig.from_params({"regularizers": {"tv": 1}})
    with pytest.raises(IdealError, match="parameterization"):
        IdealConfig.from_params({"parameterization": "wavelet"})
    with pytest.raises(IdealError, match="transforms.scale"):
        IdealConfig.from_params({"transforms": {"scale": [1.2, 0.8]}})


def _plan_inputs(model_fn=tiny_model, names=("cat", "dog", "bird", "fish")):
    return (lambda: list(names)), model_fn


def test_check_parameters_unknown_class_zero_steps_unknown_layer(make_image, tmp_path):
    from transfer_lab.models.backbones import BackboneError
    from transfer_lab.pipelines.visualization.nodes import check_parameters

    names, model = _plan_inputs()
    base = {"model": "classifier", "classes": ["cat"], "second_model": None, "feature_maps": None}
    with pytest.raises(BackboneError, match=r"Unknown class 'caat' in visualization.classes. Near matches: cat"):
        check_parameters({**base, "classes": ["dog", "caat"]}, {}, names, model)
    with pytest.raises(IdealError, match="visualization.steps"):
        check_parameters({**base, "steps": 0}, {}, names, model)
    with pytest.raises(IdealError, match="visualization.model"):
        check_parameters({**base, "model": "vgg"}, {}, names, model)
    photo = make_image(tmp_path / "p.jpg", size=(40, 40))
    with pytest.raises(BackboneError, match=r"visualization.feature_maps.layers: no layer named 'conv9'"):
        check_parameters({**base, "feature_maps": {"image": str(photo), "layers": ["conv9"]}}, {}, names, model)
    plan = check_parameters({**base, "classes": "dog+1+bird"}, {}, names, model)
    assert [c["indices"] for c in plan["classes"]] == [[1], [2]]


def test_pipeline_on_a_tiny_classifier(kedro_project, make_image):
    """The whole pipeline in-process: a tiny MobileNetV2 classifier (random weights, 32 px) saved
    where head_training puts it, a random second model, feature maps of two layers."""
    from transfer_lab.models.backbones import BackboneConfig, build_classifier, build_head

    cfg = BackboneConfig(name="mobilenet_v2", weights=None, image_size=32, alpha=0.35)
    head = build_head(int(1280), 2, dropout=0.0)
    model = build_classifier(cfg, head)
    models = kedro_project.out("data/06_models")
    model.save(models / "classifier.keras")
    (models / "class_names.json").write_text(json.dumps(["cat", "dog"]))
    photo = make_image(kedro_project.out("photo.jpg"), size=(50, 40))
    kedro_project.run("visualization", {
        "visualization.classes": ["cat", "dog"],
        "visualization.steps": 12,
        "visualization.learning_rate": 0.2,
        "visualization.transforms": {"jitter": 2, "scale": [0.95, 1.05], "rotate": 5},
        "visualization.second_model": {"name": "mobilenet", "weights": None, "alpha": 0.25, "labels": str(_labels()), "image_size": 32},
        "visualization.feature_maps": {"image": str(photo), "layers": ["block_1_expand_relu", "last_conv"], "max_maps": 4},
    })
    out = kedro_project.out("data/08_reporting")
    assert sorted(p.name for p in (out / "ideal_images").glob("*.png")) == ["cat.png", "dog.png"]
    assert (out / "ideal_images_grid.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "visualization_feature_maps").glob("*.png")) == ["block_1_expand_relu.png", "out_relu.png"]
    report = json.loads((out / "ideal_images.json").read_text())
    from transfer_lab.data.imaging import load_rgb

    for name, idx in (("cat", 0), ("dog", 1)):
        entry = report["classes"][name]
        saved = load_rgb(out / "ideal_images" / f"{name}.png")
        assert saved.shape == (32, 32, 3)
        # the report measures the PNG on disk
        assert entry["index"] == idx
        assert entry["probability"] == pytest.approx(float(np.asarray(model(saved[None].astype("float32")))[0, idx]), abs=1e-4)
        assert entry["tv_per_pixel"] == pytest.approx(ideal.tv_per_pixel(saved), abs=1e-3)
        assert 1 <= entry["second_model"]["rank"] <= 1000 and 0 <= entry["second_model"]["probability"] <= 1
    assert report["classes"]["cat"]["second_model"]["classes"] == ["tabby", "tiger_cat", "Persian_cat", "Siamese_cat", "Egyptian_cat"]


def _labels():
    from tests.conftest import SHARED

    path = SHARED / "weights" / "imagenet_labels.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.mark.slow
def test_ideal_zebra_on_real_weights(shared_dir):
    """MobileNetV2's ideal zebra: p >= 0.95 under it, and top-5 for zebra under MobileNet 0.25."""
    from transfer_lab.models.backbones import build_imagenet_classifier, imagenet_class_names, logits_model

    w = shared_dir / "weights"
    model = build_imagenet_classifier("mobilenet_v2", w / "mobilenet_v2_1.0_imagenet.weights.h5")
    second = build_imagenet_classifier("mobilenet", w / "mobilenet_0.25_imagenet.weights.h5", alpha=0.25)
    names = imagenet_class_names(w / "imagenet_labels.txt")
    zebra = names.index("zebra")
    cfg = IdealConfig.from_params({"steps": 48, "regularizers": {"total_variation": 1.0},
                                   "transforms": {"jitter": 8, "scale": [0.9, 1.1], "rotate": 10}})
    res = ideal.generate(logits_model(model), zebra, cfg, progress=False)
    assert res.probability >= 0.95
    _, rank = ideal.group_rank(ideal.class_probabilities(second, res.image), [zebra])
    assert rank <= 5
