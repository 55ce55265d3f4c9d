"""The ``head_training`` parameters (conf/base/parameters_head_training.yml)."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from transfer_lab.params.base import section
from transfer_lab.params.fields import KeyedParams, TrueFalse, param


@section("head_training", conf_file="parameters_head_training.yml")
class HeadTrainingParams(KeyedParams):
    """The classifier head on the cached features: dropout -> dense logits -> softmax, Adam, early
    stopping on the validation loss, optionally refitted on train + val. A key given ``null``
    takes its default."""

    dropout: float = param(0.0, "The fraction of the head's inputs dropped in training: 0 (no Dropout layer) "
                                "to below 1", 0.2, ge=0.0, lt=1.0, allow_inf_nan=False)
    l2: float = param(1e-3, "The L2 penalty on the dense weights: 0 (none) to 1", ge=0.0, le=1.0,
                      allow_inf_nan=False)
    learning_rate: float = param(1e-2, "Adam's learning rate: above 0, at most 10", gt=0.0, le=10.0,
                                 allow_inf_nan=False)
    label_smoothing: float = param(0.0, "Label smoothing: 0 (none) to below 1", 0.1, ge=0.0, lt=1.0,
                                   allow_inf_nan=False)
    batch_size: int = param(2048, "Samples per step and replica: a whole number from 1 to 1048576 (larger "
                                  "than the train split = full batch)", 256, ge=1, le=1 << 20)
    epochs: int = param(1000, "The most epochs: a whole number from 1 to 100000 (early stopping ends sooner)",
                        200, ge=1, le=100000)
    patience: int = param(50, "Epochs without a better validation loss before stopping: a whole number from "
                              "0 to 100000", 20, ge=0, le=100000)
    class_weight: TrueFalse = param(True, "Weigh classes by 1/frequency: true or false", False)
    flip_augment: TrueFalse = param(True, "Add the mirror-image features to training: true or false", False)
    refit_on_val: TrueFalse = param(True, "Refit a fresh head on train + val for the best number of epochs: "
                                          "true or false", False)
    seed: int = param(42, "The random seed: a whole number from 0 to 4294967295", 1, ge=0, le=2**32 - 1)
    exclude_label_issues: TrueFalse = param(
        False, "Train without the photos the audit flagged as likely label errors "
              "(data/08_reporting/label_issues.csv; without it, a warning and every photo): true or false", False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data
