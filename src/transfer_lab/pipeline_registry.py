"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# `kedro run` runs these, in this order of data dependencies. `evaluation` is run on its own, on
# photos the user brings: kedro run --pipelines=evaluation --params evaluation.source=PATH
DEFAULT = ("data_ingestion", "feature_extraction", "head_training", "fine_tuning", "visualization", "adversarial",
           "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT if name in pipelines), Pipeline([]))
    return pipelines
