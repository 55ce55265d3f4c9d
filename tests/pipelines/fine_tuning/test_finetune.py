"""The fine_tuning parameter model, and the fine-tuning mechanics on tiny models (random weights,
32 px): unfreezing, BatchNorm kept frozen, augmentation, resume after a kill."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from transfer_lab.models.backbones import all_layers
from transfer_lab.models.training import (
    FineTuneError,
    compile_for_fine_tuning,
    current_learning_rate,
    fit_resumable,
    training_model,
)
from transfer_lab.models.backbones import backbone_of, build_classifier, build_head
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.models.unfreeze import resolve_unfreeze, unfreeze_top
from transfer_lab.params.fine_tuning import AugmentationParams, FineTuningParams

from .interrupt import StopAfterEpochs

SIZE = 32


def tiny_classifier(n_classes: int = 2, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    cfg = BackboneParams.model_validate({"name": "mobilenet_v2", "weights": "none", "image_size": SIZE, "alpha": 0.35})
    return build_classifier(cfg, build_head(1280, n_classes, dropout=0.2))


def random_data(n: int = 16, n_classes: int = 2, seed: int = 0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(n) % (n_classes + 1)).clip(0, n_classes - 1).astype("int32")  # uneven classes
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _bn_layers(model):
    import keras

    return [l for l in all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]


def test_unfreeze_blocks_layers_and_names():
    model = tiny_classifier()
    backbone = backbone_of(model)
    sel = unfreeze_top(model, "mobilenet_v2", 2)
    trainable = {l.name for l in backbone.layers if l.trainable and l.weights}
    # the top two blocks of MobileNetV2 are block_16 and Conv_1; their BN layers stay frozen
    assert trainable == {"block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1"}
    assert sel["blocks"] == ["block_16", "Conv_1"]
    assert not backbone.get_layer("block_15_project").trainable
    assert model.get_layer("logits").trainable
    # trainable parameters: exactly the unfrozen convolutions plus the head
    expected = sum(int(np.prod(w.shape)) for name in trainable for w in backbone.get_layer(name).weights)
    expected += sum(int(np.prod(w.shape)) for w in model.get_layer("logits").weights)
    assert sel["trainable_params"] == expected == sum(int(np.prod(w.shape)) for w in model.trainable_weights)

    unfreeze_top(model, "mobilenet_v2", "5 layers")
    assert [l.name for l in backbone.layers if l.trainable and l.weights] == ["block_16_project", "Conv_1"]
    unfreeze_top(model, "mobilenet_v2", "block_15_depthwise")
    names = [l.name for l in backbone.layers if l.trainable and l.weights]
    assert names[0] == "block_15_depthwise" and "block_15_expand" not in names and names[-1] == "Conv_1"
    unfreeze_top(model, "mobilenet_v2", "block_14")
    assert backbone.get_layer("block_14_expand").trainable and not backbone.get_layer("block_13_project").trainable
    unfreeze_top(model, "mobilenet_v2", "all")
    assert backbone.get_layer("Conv1").trainable
    assert all(not l.trainable for l in _bn_layers(model))


def test_batchnorm_stays_frozen_while_training():
    model = tiny_classifier()
    unfreeze_top(model, "mobilenet_v2", "all")
    compile_for_fine_tuning(model, 1e-3, jit_compile=False)
    bns = _bn_layers(model)
    assert bns and all(not l.trainable for l in bns)
    before = [[np.array(w) for w in l.weights] for l in bns]
    conv = backbone_of(model).get_layer("Conv_1").kernel
    conv_before = np.array(conv)
    x, y, ds = random_data()
    # the outer model's training=True must not switch BN to batch statistics
    np.testing.assert_allclose(model(x[:4], training=True), model(x[:4], training=False), rtol=1e-5, atol=1e-6)
    model.fit(ds, epochs=1, verbose=0)
    after = [[np.array(w) for w in l.weights] for l in bns]
    for b, a in zip(before, after):
        for wb, wa in zip(b, a):
            np.testing.assert_array_equal(wb, wa)  # gamma, beta, moving mean and variance untouched
    assert not np.array_equal(conv_before, np.array(conv))  # while the unfrozen convolutions did learn


def test_optimizer_uses_configured_learning_rate():
    cfg = FineTuningParams(learning_rate=3e-5)
    model = tiny_classifier()
    unfreeze_top(model, "mobilenet_v2", 1)
    trainer = training_model(model, cfg.augmentation)
    compile_for_fine_tuning(trainer, cfg.learning_rate)
    assert current_learning_rate(trainer) == pytest.approx(3e-5, rel=1e-6)
    assert FineTuningParams().learning_rate == 1e-4


def test_augmentation_only_in_training():
    cfg = FineTuningParams.model_validate({"augmentation": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2,
                                                            "contrast": 0.3}})
    model = tiny_classifier()
    trainer = training_model(model, cfg.augmentation, seed=1)
    assert trainer is not model
    aug = trainer.get_layer("augmentation")
    assert [l.name for l in aug.layers] == ["flip", "rotation", "zoom", "contrast"]
    x, _, _ = random_data(4)
    np.testing.assert_allclose(trainer(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(aug(x, training=False), x)
    assert not np.allclose(aug(x, training=True), x)
    # no augmentation: train the classifier itself
    off = FineTuningParams.model_validate({"augmentation": None})
    assert off.augmentation == AugmentationParams.off() and not off.augmentation.active
    assert training_model(model, off.augmentation) is model


def test_interrupted_run_resumes_from_last_completed_epoch(tmp_path):
    import keras

    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    # first run: killed at the start of the third epoch (0-based 2)
    with pytest.raises(KeyboardInterrupt):
        cfg = FineTuningParams.model_validate({"epochs": 4, "early_stopping": {"patience": 50},
                                               "reduce_lr": {"patience": 50}, "learning_rate": 1e-3})
        model = tiny_classifier()
        unfreeze_top(model, "mobilenet_v2", 1)
        compile_for_fine_tuning(model, cfg.learning_rate, jit_compile=False)
        _, _, ds = random_data()
        fit_resumable(model, ds, ds, cfg, tmp_path / "backup", extra_callbacks=[Spy(), StopAfterEpochs(2)],
                         verbose=0)
    meta = json.loads((tmp_path / "backup" / "keras" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2
    saved = json.loads((tmp_path / "backup" / "state" / "state.json").read_text())
    trained = [np.array(w) for w in model.weights]

    # same parameters again: a fresh model continues at epoch 2, with the trained weights
    seen.clear()
    model2 = tiny_classifier()
    unfreeze_top(model2, "mobilenet_v2", 1)
    compile_for_fine_tuning(model2, cfg.learning_rate, jit_compile=False)
    assert not all(np.array_equal(np.array(w), t) for w, t in zip(model2.weights, trained))

    class CheckStart(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                for w, t in zip(self.model.weights, trained):
                    np.testing.assert_array_equal(np.array(w), t)
                restored.append(epoch)

    restored = []
    info = fit_resumable(model2, ds, ds, cfg, tmp_path / "backup", extra_callbacks=[Spy(), CheckStart()], verbose=0)
    assert seen == [2, 3] and restored == [2]
    assert info["resumed_from_epoch"] == 2
    assert info["epochs_run"] == 4 and len(info["history"]["loss"]) == 4
    assert info["history"]["loss"][:2] == saved["history"]["loss"]  # the first epochs come from the saved state
    # best weights: the epoch with the lowest validation loss over the whole (resumed) run
    assert info["best_epoch"] == int(np.argmin(info["history"]["val_loss"])) + 1
    assert info["best_val_loss"] == pytest.approx(min(info["history"]["val_loss"]))
    assert not (tmp_path / "backup").exists()  # cleaned up after a completed run


CONF = Path(__file__).resolve().parents[3] / "conf" / "base"


def test_defaults_are_the_yaml_defaults():
    conf = yaml.safe_load((CONF / "parameters_fine_tuning.yml").read_text())["fine_tuning"]
    assert FineTuningParams.model_validate(conf) == FineTuningParams()
    assert FineTuningParams().model_dump() == conf


@pytest.mark.parametrize(
    "params, message",
    [
        ({"unfreeze": 0}, "fine_tuning.unfreeze=0 unfreezes nothing"),
        ({"unfreeze": True}, "fine_tuning.unfreeze=True is not valid"),
        ({"unfreeze": 2.5}, "fine_tuning.unfreeze=2.5 must be a whole number"),
        ({"learning_rate": 0}, "fine_tuning.learning_rate=0 is not valid: input should be greater than 0"),
        ({"learning_rate": -1e-5}, "fine_tuning.learning_rate=-1e-05 is not valid"),
        ({"epochs": 0}, "fine_tuning.epochs=0 is not valid"),
        ({"augmentation": {"rotation": 3}}, "fine_tuning.augmentation.rotation=3 is not valid: .*0.5"),
        ({"augmentation": {"flip": "sideways"}}, "fine_tuning.augmentation.flip=sideways is not valid: .*horizontal"),
        ({"augmentation": 3}, "fine_tuning.augmentation=3 is not valid: give a mapping"),
        ({"augmentation": {"rotaton": 0.1}}, "Did you mean fine_tuning.augmentation.rotation?"),
        ({"lerning_rate": 1e-5}, "fine_tuning.lerning_rate is not a parameter. Did you mean fine_tuning.learning_rate?"),
        ({"class_weight": "yes"}, "fine_tuning.class_weight=yes is not valid: must be true or false"),
        ({"monitor": "loss"}, "fine_tuning.monitor=loss is not valid: .*val_loss"),
        ({"reduce_lr": {"factor": 1}}, "fine_tuning.reduce_lr.factor=1 is not valid: input should be less than 1"),
        ({"reduce_lr": {"min_lr": 1e-3}}, "fine_tuning.reduce_lr.min_lr=0.001 must be between 0 and "
                                          "fine_tuning.learning_rate=0.0001"),
        ({"early_stopping": {"patience": 0}}, "fine_tuning.early_stopping.patience=0 is not valid"),
        ({"jit_compile": "maybe"}, "fine_tuning.jit_compile=maybe is not valid: use auto, true or false"),
        ({"backup_dir": " "}, "fine_tuning.backup_dir is empty"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_key(params, message):
    with pytest.raises(ValidationError, match=message):
        FineTuningParams.model_validate(params)


def test_aliases_and_command_line_values(caplog):
    p = FineTuningParams.model_validate({"unfreeze": "4", "augmentation": None, "early_stopping": None,
                                         "jit_compile": "false", "learning_rate": "1e-4"})
    assert (p.unfreeze, p.augmentation.active, p.early_stopping.patience, p.jit_compile, p.learning_rate) == \
        (4, False, 1, False, 1e-4)
    assert FineTuningParams(unfreeze=" 2 layers ").unfreeze == "2 layers"
    assert FineTuningParams(augmentation={"flip": None}).augmentation.flip == "none"
    with caplog.at_level("WARNING"):
        FineTuningParams(learning_rate=0.1)
    assert "fine_tuning.learning_rate=0.1 is high" in caplog.text


@pytest.mark.parametrize(
    "unfreeze, message",
    [(40, "has only 19"), ("400 layers", "has only 153"), ("block_16_expnd", "Near matches: block_16_expand")],
)
def test_an_unfreeze_the_backbone_cannot_satisfy_is_refused(unfreeze, message):
    with pytest.raises(FineTuneError, match=message):
        resolve_unfreeze(backbone_of(tiny_classifier()), "mobilenet_v2", FineTuningParams(unfreeze=unfreeze).unfreeze)



def test_layerwise_adam_scales_the_named_variables_step():
    import keras

    from transfer_lab.models.training import layerwise_adam

    def two_layer():
        keras.utils.set_random_seed(0)
        inp = keras.Input((4,))
        out = keras.layers.Dense(3, name="top")(keras.layers.Dense(5, name="low")(inp))
        return keras.Model(inp, out)

    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), np.arange(8) % 3
    moved = {}
    for name, factor in (("plain", 1.0), ("tenth", 0.1)):
        model = two_layer()
        before = [np.array(v) for v in model.trainable_variables]
        low = {v.path: factor for v in model.get_layer("low").trainable_variables}
        model.compile(optimizer=layerwise_adam(1e-2, low),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(x, y)
        moved[name] = {v.path: np.abs(np.array(v) - b).max() for v, b in zip(model.trainable_variables, before)}
    for path, step in moved["plain"].items():
        expected = step * (0.1 if "/low/" in f"/{path}" else 1.0)
        assert moved["tenth"][path] == pytest.approx(expected, rel=1e-3), path


def test_label_smoothing_spreads_the_target_over_every_class():
    from transfer_lab.models.training import smoothed_sparse_crossentropy

    assert smoothed_sparse_crossentropy(0.0) == "sparse_categorical_crossentropy"
    loss = smoothed_sparse_crossentropy(0.1)
    probs = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], np.float32)
    labels = np.array([0, 2])
    target = np.full((2, 3), 0.1 / 3) + 0.9 * np.eye(3)[labels]  # Keras's smoothed one-hot target
    want = -(target * np.log(probs)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), want, rtol=1e-5)


def test_label_smoothing_is_a_fine_tuning_parameter():
    assert FineTuningParams.model_validate({"label_smoothing": 0.1}).label_smoothing == 0.1
    with pytest.raises(ValidationError, match="label_smoothing"):
        FineTuningParams.model_validate({"label_smoothing": 1.0})
