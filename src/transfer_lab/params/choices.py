"""Values shared by several parameter groups."""

from __future__ import annotations

from typing import Literal

#: Which classifier a pipeline uses: fine_tuning's (data/06_models/finetuned_classifier.keras),
#: head_training's (data/06_models/head_classifier.keras), or the backbone's own 1000-class
#: ImageNet model (backbone.name with backbone.classifier_weights).
ModelChoice = Literal["finetuned", "head", "imagenet"]

#: The pipeline that writes each trained classifier (for "run this first" messages).
WRITTEN_BY = {"finetuned": "fine_tuning", "head": "head_training"}
