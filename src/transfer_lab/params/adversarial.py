"""The ``adversarial`` parameters (conf/base/parameters_adversarial.yml): which model, which
images, the attack (:class:`transfer_lab.models.attacks.AttackConfig`), the robustness curve and
a second model the adversarial images are tried on.

Budgets and step sizes are in 0-255 pixel units (``epsilon: 2`` is the "2/255" of the papers):
0 is refused (no change allowed), above 64 warns (plainly visible), above 255 fails. Whether the
target is a class of the model, and which photos ``source`` holds, adversarial's first node resolves.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

from pydantic import field_validator, model_validator

from transfer_lab.params.base import section
from transfer_lab.params.choices import (
    MODEL_HELP, ImageNetModelParams, ModelChoice, drop_nulls, is_null, lower, model_choice, split_list,
)
from transfer_lab.params.fields import KeyedParams, TrueFalse, param

_CONF = "parameters_adversarial.yml"
Method = Literal["fgsm", "pgd", "bim"]


def _budget(value: Any, key: str, *, quantize: bool = True, allow_below_one: bool = False) -> float:
    from transfer_lab.models.attacks import check_epsilon

    if isinstance(value, bool):
        raise ValueError(f"{key}={str(value).lower()} is not a number: give the L-inf budget in 0-255 pixel units, "
                         f"e.g. --params \"{key}=2\".")
    return check_epsilon(value, key, quantize=quantize, allow_below_one=allow_below_one)


class RobustnessParams(KeyedParams):
    """``adversarial.robustness``: accuracy on the test split under an untargeted attack, per budget."""

    where: ClassVar[str] = "adversarial.robustness"
    conf_file: ClassVar[str | None] = _CONF

    budgets: list[float] = param([0, 0.5, 1, 2, 4, 8], "L-inf budgets in 0-255 pixel units, each 0 to 255 (below 1 "
                                                       "no whole-pixel change fits: = clean accuracy)", "[0,1,2,4,8]")
    method: Method = param("pgd", "Use fgsm, pgd or bim", "bim")
    steps: int = param(10, "Attack steps: a whole number from 1 to 10000", 5, ge=1, le=10_000)
    step_size: float | None = param(None, "Above 0, at most 255 (0-255 pixel units); null = epsilon / 4 (at least "
                                          "0.25)", 0.5, gt=0.0, le=255.0, allow_inf_nan=False)
    max_images: int | None = param(200, "Test images attacked: a whole number, 1 or more; null = all", 50, ge=1)
    random_start: TrueFalse = param(False, "Start PGD from a random point in the ball: true or false", True)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        data = drop_nulls(data, keep=("step_size", "max_images"))
        if isinstance(data, dict) and data.get("budgets", []) is None:
            data = {**data, "budgets": []}
        return data

    @field_validator("method", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return lower(value)

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        value = split_list(value)
        if not isinstance(value, list):
            raise ValueError(f"adversarial.robustness.budgets={value} must be a list of budgets in 0-255 units, e.g. "
                             "--params \"adversarial.robustness.budgets=[0,1,2,4,8]\".")
        return sorted({_budget(b, "adversarial.robustness.budgets", allow_below_one=True) for b in value})


class TransferParams(ImageNetModelParams):
    """``adversarial.transfer``: a second ImageNet model the adversarial images are tried on
    (targets and labels mapped by name or group, e.g. cat -> 281-285)."""

    where: ClassVar[str] = "adversarial.transfer"
    conf_file: ClassVar[str | None] = _CONF


@section("adversarial", conf_file=_CONF)
class AdversarialParams(KeyedParams):
    """FGSM / PGD in pixel space under an L-inf budget. A key given ``null`` takes its default,
    except those whose null means something: ``source`` (the test split), ``target``
    (untargeted), ``step_size`` (epsilon / 4), ``max_images`` (all), ``image_size`` (the
    backbone's) and ``transfer`` (skip)."""

    model: ModelChoice = param("finetuned", f"Use {MODEL_HELP}", "imagenet")
    source: str | None = param(None, "A photo or a folder of photos; null = the manifest's test split",
                               "../shared/data/PetImages/Dog")
    target: Union[int, str, list[Union[int, str]], None] = param(
        "cat", "A class name or index of the model, a group (cat, dog), a list (joined with + on the command line) "
               "or null (untargeted)", "cat")
    method: Method = param("pgd", "Use fgsm (one step of epsilon), pgd or bim (pgd without random start)", "fgsm")
    epsilon: float = param(2.0, "The L-inf budget in 0-255 pixel units, above 0 and at most 255 (2 = 2/255)", 2)
    step_size: float | None = param(None, "Above 0, at most 255 (0-255 pixel units); null = epsilon / 4 (at least "
                                          "0.25)", 0.5, gt=0.0, le=255.0, allow_inf_nan=False)
    steps: int = param(40, "Attack steps: a whole number from 1 to 10000 (20 is usual)", 20, ge=1, le=10_000)
    random_start: TrueFalse = param(False, "Start PGD from a random point in the ball: true or false", True)
    early_stop: TrueFalse = param(True, "Stop each image at its first success: true or false", False)
    confidence: float = param(0.0, "The logit margin success needs: 0 (the top class is enough) or more", 1.0,
                              ge=0.0, allow_inf_nan=False)
    quantize: TrueFalse = param(True, "Whole pixel values inside the loop: true or false", False)
    batch_size: int = param(16, "Images per attack batch: a whole number, 1 or more", 32, ge=1)
    seed: int = param(42, "The random seed: a whole number, 0 or more", 1, ge=0)
    max_images: int | None = param(None, "Attack at most this many images: a whole number, 1 or more; null = all",
                                   10, ge=1)
    max_panels: int = param(16, "Per-image figures: a whole number, 0 or more", 4, ge=0)
    image_size: int | None = param(None, "The imagenet model's input size in pixels, 32 or more; null = "
                                         "backbone.image_size", 224, ge=32)
    robustness: RobustnessParams = RobustnessParams()
    transfer: TransferParams | None = TransferParams(name="mobilenet", alpha=0.25)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        data = drop_nulls(data, keep=("source", "target", "step_size", "max_images", "image_size", "transfer"))
        if isinstance(data, dict):
            data = dict(data)
            if "transfer" in data and is_null(data["transfer"]):
                data["transfer"] = None
            if "robustness" in data and is_null(data["robustness"]):
                data["robustness"] = {"budgets": []}
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return model_choice(value, "adversarial.model")

    @field_validator("method", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return lower(value)

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        return None if value is None or str(value).strip() == "" else str(value).strip()

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        value = split_list(value)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value.strip() if isinstance(value, str) else value

    @field_validator("epsilon", mode="before")
    @classmethod
    def _epsilon(cls, value: Any) -> Any:
        eps = _budget(value, "adversarial.epsilon", allow_below_one=True)
        if eps == 0:
            raise ValueError("adversarial.epsilon=0 allows no change at all: give a budget in 0-255 pixel units, "
                             "e.g. --params \"adversarial.epsilon=2\".")
        return eps

    @model_validator(mode="after")
    def _whole_pixels(self) -> "AdversarialParams":
        if self.epsilon < 1:  # on whole pixels, a budget in (0, 1) fits no change
            _budget(self.epsilon, "adversarial.epsilon", quantize=self.quantize)
        return self

    @property
    def targeted(self) -> bool:
        return self.target is not None

    def attack_config(self) -> Any:
        """The attack (:class:`transfer_lab.models.attacks.AttackConfig`), normalised (fgsm: one step)."""
        from transfer_lab.models.attacks import AttackConfig

        return AttackConfig(method=self.method, epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
                            random_start=self.random_start, early_stop=self.early_stop, confidence=self.confidence,
                            quantize=self.quantize, batch_size=self.batch_size, seed=self.seed).validated()

    def robustness_config(self, epsilon: float) -> Any:
        """The robustness curve's attack at one budget (untargeted, run to the end of its steps
        only while an image is still right: ``early_stop`` as the main attack)."""
        from transfer_lab.models.attacks import AttackConfig

        r = self.robustness
        return AttackConfig(method=r.method, epsilon=epsilon, step_size=r.step_size, steps=r.steps,
                            random_start=r.random_start, quantize=self.quantize, batch_size=self.batch_size,
                            seed=self.seed).validated("adversarial.robustness")
