"""The ``audit`` parameters (conf/base/parameters_audit.yml): near-duplicates across splits in
feature space, likely label errors (k-fold confident learning), outliers and the galleries."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from transfer_lab.params.base import section
from transfer_lab.params.fields import KeyedParams, param


class FeatureDuplicateParams(KeyedParams):
    where: ClassVar[str] = "audit.near_duplicates"

    # Measured (MobileNetV2 pooled features, PetImages): generated copies >= 0.913 at 160 px and
    # >= 0.874 at 224 px; different photos < 0.85 at 160 px (2 pairs of 81,322 over 0.80), < 0.80 at 224 px.
    similarity: float = param(0.88, "Cosine similarity of pooled features from which two photos in different "
                                    "splits are near-duplicates: a number from 0 to 1", 0.9, ge=0.0, le=1.0)


class LabelIssueParams(KeyedParams):
    where: ClassVar[str] = "audit.label_issues"

    folds: int = param(5, "Folds of the out-of-fold predictions: a whole number, 2 or more", 5, ge=2)
    c: float = param(1.0, "Inverse L2 strength of the logistic regression on standardised features: a number "
                          "over 0", 0.1, gt=0)
    max_iter: int = param(300, "Iterations of the solver: a whole number, 10 or more", 500, ge=10)
    components: int | None = param(None, "Principal axes the features are projected on first (faster, but it "
                                         "found 9 of 20 moved photos instead of 18 in a test); null = none", 256,
                                   ge=2)
    seed: int = param(42, "Seed of the folds: a whole number, 0 or more", 1, ge=0)
    # Measured on seeded PetImages sets (150 photos a class, 20 moved, MobileNetV2 at 128 px, two
    # sets): moved photos in the top 40 were 15 and 19 with the logistic regression and the
    # confident rule, 20 and 19 with the regression averaged with 10 neighbours and the predicted rule.
    neighbours: int = param(10, "Nearest neighbours (cosine) whose labels are averaged with the logistic "
                                "regression's out-of-fold probabilities: a whole number, 0 (the regression "
                                "alone) or more", 20, ge=0)
    rule: Literal["confident", "predicted"] = param(
        "predicted", "Use predicted (flagged when another class is more likely than the given label and the given "
                     "label is under its class's mean confidence) or confident (another class over its own mean "
                     "confidence: fewer flagged)", "confident")


class OutlierParams(KeyedParams):
    where: ClassVar[str] = "audit.outliers"

    quantile: float = param(0.99, "A photo is an outlier when its distance to every class mean is over this "
                                  "quantile of that class's own training photos' distances: a number from 0.5 to 1",
                            0.995, ge=0.5, le=1.0)


class GalleryParams(KeyedParams):
    where: ClassVar[str] = "audit.gallery"

    n: int = param(24, "Photos per gallery: a whole number, 1 or more", 12, ge=1)
    image_size: int = param(128, "Pixels per photo in the galleries: a whole number, 16 or more", 96, ge=16)


@section("audit", conf_file="parameters_audit.yml")
class AuditParams(KeyedParams):
    """The data audit on the cached features (after feature_extraction)."""

    near_duplicates: FeatureDuplicateParams = Field(default_factory=FeatureDuplicateParams)
    label_issues: LabelIssueParams = Field(default_factory=LabelIssueParams)
    outliers: OutlierParams = Field(default_factory=OutlierParams)
    gallery: GalleryParams = Field(default_factory=GalleryParams)
