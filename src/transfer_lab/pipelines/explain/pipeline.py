"""explain: parameters -> photos; photos -> maps + overlays + index; saved maps -> faithfulness; a gallery."""

from kedro.pipeline import Pipeline, node

from .nodes import explain_photos, explanations_gallery, measure_faithfulness, select_photos

_MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(select_photos, ["params:explain", "manifest@lazy", *_MODELS], "explain_photos",
                 name="select_photos"),
            node(explain_photos, ["explain_photos", "params:explain", "params:backbone", *_MODELS,
                                  "class_names@lazy"], "explanations", name="explain_photos"),
            node(measure_faithfulness, ["explanations", "params:explain", "params:backbone", *_MODELS],
                 "explanations_report", name="measure_faithfulness"),
            node(explanations_gallery, ["explanations", "params:explain"], "explanations_gallery",
                 name="explanations_gallery"),
        ],
        namespace="explain",
        prefix_datasets_with_namespace=False,
    )
