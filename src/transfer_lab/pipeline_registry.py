"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# `kedro run` runs these, in this order of data dependencies. `evaluation` and `inference` are run on
# their own, on photos the user brings (kedro run --pipelines=evaluation --params evaluation.source=PATH);
# `export` on its own too (SavedModel and TFLite files of the chosen classifier).
DEFAULT = ("data_ingestion", "feature_extraction", "audit", "head_training", "fine_tuning", "serving",
           "explain", "visualization", "adversarial", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    from transfer_lab.runtime.quiet import import_tensorflow

    import_tensorflow()  # the pipelines' modules import Keras: load TensorFlow without its native notes
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT if name in pipelines), Pipeline([]))
    return pipelines
