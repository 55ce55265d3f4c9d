"""export: the chosen classifier -> SavedModel, TFLite fp32 and int8 -> parity report."""

from kedro.pipeline import Pipeline, node

from .nodes import export_classifier

MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(export_classifier, ["params:export", "features"] + MODELS,
                 ["exported_saved_model", "exported_tflite_fp32", "exported_tflite_int8", "export_report"],
                 name="export_classifier"),
        ],
        namespace="export",
        prefix_datasets_with_namespace=False,
    )
