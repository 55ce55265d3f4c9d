"""AdversarialParams: every rule of the adversarial parameters, with the key named."""

from __future__ import annotations

import logging

import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import ROOT
from transfer_lab.params.adversarial import AdversarialParams


def test_yaml_defaults_are_the_model_defaults():
    raw = yaml.safe_load((ROOT / "conf/base/parameters_adversarial.yml").read_text())["adversarial"]
    assert AdversarialParams.model_validate(raw) == AdversarialParams()
    p = AdversarialParams()
    assert p.model == "finetuned" and p.target == "cat" and p.targeted and p.transfer.alpha == 0.25


@pytest.mark.parametrize("given, message", [
    ({"epsilon": 0}, r"adversarial.epsilon=0 allows no change at all"),
    ({"epsilon": -2}, r"adversarial.epsilon=-2 must be a finite number >= 0"),
    ({"epsilon": 1000}, r"adversarial.epsilon=1000 is more than the whole 0-255 pixel range"),
    ({"epsilon": 2 / 255}, r"for 2/255 pass adversarial.epsilon=2"),
    ({"epsilon": "two"}, r"adversarial.epsilon='two' is not a number"),
    ({"steps": 0}, r"adversarial.steps=0 is not valid: .*greater than or equal to 1.*--params \"adversarial.steps=20\""),
    ({"method": "cw"}, r"adversarial.method=cw is not valid: .*'fgsm', 'pgd' or 'bim'"),
    ({"model": "classifier"}, r"adversarial.model=classifier is the old name.*finetuned.*head"),
    ({"model": "vgg"}, r"adversarial.model=vgg is not valid.*finetuned.*head.*imagenet"),
    ({"max_images": 0}, r"adversarial.max_images=0 is not valid"),
    ({"confidence": -1}, r"adversarial.confidence=-1 is not valid"),
    ({"quantize": "yes"}, r"adversarial.quantize=yes is not valid: must be true or false"),
    ({"robustness": {"budgets": [0, 300]}}, r"adversarial.robustness.budgets=300 is more than"),
    ({"robustness": {"steps": 0}}, r"adversarial.robustness.steps=0 is not valid"),
    ({"robustness": {"budget": [1]}}, r"adversarial.robustness.budget is not a parameter. Did you mean "
                                      r"adversarial.robustness.budgets\?"),
    ({"transfer": {"weights": "/no/such.weights.h5"}}, r"adversarial.transfer.weights: file not found: "
                                                       r"/no/such.weights.h5.*adversarial.transfer=null"),
    ({"transfer": {"name": "mobilenet_v9"}}, r"adversarial.transfer.name=mobilenet_v9 is not a known backbone"),
    ({"epsilonn": 2}, r"adversarial.epsilonn is not a parameter. Did you mean adversarial.epsilon\?"),
])
def test_a_wrong_value_is_refused_naming_the_key(given, message):
    with pytest.raises(ValidationError, match=message):
        AdversarialParams(**given)


def test_command_line_values(caplog):
    # what --params "adversarial.target=zebra+tabby,adversarial.transfer=null,..." gives
    p = AdversarialParams(target="zebra+tabby", transfer=None, epsilon="4", steps="5", max_images=None, source="")
    assert p.target == ["zebra", "tabby"] and p.transfer is None and p.epsilon == 4.0 and p.steps == 5
    assert p.source is None and p.max_images is None
    assert AdversarialParams(target=None).targeted is False
    assert AdversarialParams(target="").targeted is False
    with caplog.at_level(logging.WARNING):
        assert AdversarialParams(epsilon=100).epsilon == 100.0  # > 64 warns
    assert "plainly visible" in caplog.text
    # below 1/255 is fine without whole pixels, and in the robustness budgets (= clean accuracy)
    assert AdversarialParams(epsilon=0.5, quantize=False).epsilon == 0.5
    assert AdversarialParams(robustness={"budgets": [8, 0, 0.5, 8]}).robustness.budgets == [0.0, 0.5, 8.0]


def test_attack_configs():
    cfg = AdversarialParams(method="fgsm", epsilon=3, steps=20).attack_config()
    assert (cfg.method, cfg.steps, cfg.alpha) == ("fgsm", 1, 3.0)  # fgsm: one step of epsilon
    cfg = AdversarialParams(epsilon=8).attack_config()
    assert cfg.alpha == 2.0 and cfg.seed == 42 and cfg.early_stop
    rob = AdversarialParams(robustness={"steps": 4, "step_size": 0.5}, batch_size=8).robustness_config(4.0)
    assert (rob.epsilon, rob.steps, rob.alpha, rob.batch_size) == (4.0, 4, 0.5, 8)
