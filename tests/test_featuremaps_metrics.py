"""transfer_lab.models.featuremaps (layer activations for an image) and transfer_lab.reports.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from transfer_lab.models.backbones import BackboneError, build_classifier, build_feature_extractor, build_head
from transfer_lab.models.featuremaps import layer_activations
from transfer_lab.params.backbone import BackboneParams
from transfer_lab.reports.metrics import classification_report, top_k_accuracy


def test_layer_activations_on_feature_extractor_and_classifier():
    cfg = BackboneParams(name="mobilenet_v2", weights="none", image_size=32, alpha=0.35)
    extractor = build_feature_extractor(cfg)
    head = build_head(1280, 3)
    classifier = build_classifier(cfg, head, backbone=extractor.get_layer("backbone"))
    image = np.random.default_rng(0).integers(0, 256, (40, 36, 3)).astype(np.uint8)  # resized to 32
    acts = layer_activations(classifier, None, image)
    assert list(acts) == ["out_relu"] and acts["out_relu"].shape == (1, 1, 1280)
    acts = layer_activations(classifier, ["block_1_expand", "pool", "logits", "probabilities"], image)
    assert acts["block_1_expand"].shape[:2] == (16, 16) and acts["pool"].shape == (1280,)
    np.testing.assert_allclose(acts["probabilities"].sum(), 1.0, rtol=1e-5)
    # the same values as the models themselves
    batch = np.asarray(np.stack([image[:32, :32]] * 2), np.float32)
    out = layer_activations(extractor, "pool", batch)["pool"]
    np.testing.assert_allclose(out, extractor.predict(batch, verbose=0), rtol=1e-4, atol=1e-5)
    with pytest.raises(BackboneError, match="block_16_project"):
        layer_activations(classifier, "block_16_projekt", image)


def test_classification_report():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    rep = classification_report([0, 1, 2, 2], probs, ["a", "b", "c"])
    assert rep["accuracy"] == 0.75 and rep["n"] == 4
    assert rep["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert rep["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert rep["per_class"]["c"]["recall"] == 0.5
    assert top_k_accuracy([2, 2], probs[[0, 3]], k=2) == 0.0 and top_k_accuracy([1, 1], probs[[0, 3]], k=2) == 1.0
    with pytest.raises(ValueError, match="shape"):
        classification_report([0], probs[:1, :2], ["a", "b", "c"])
