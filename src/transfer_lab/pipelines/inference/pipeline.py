"""inference: read the source (after checking the chosen classifier exists) -> predictions.csv.
``inference.model`` chooses head | finetuned."""

from kedro.pipeline import Pipeline, node

from .nodes import label_photos, read_source

MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(read_source, ["params:inference"] + MODELS, "inference_inputs", name="read_source"),
            node(label_photos, ["inference_inputs", "unfamiliar_stats@npz", "classifier_config", "params:inference",
                                "params:data"] + MODELS, "inference_predictions", name="label_photos"),
        ],
        namespace="inference",
        prefix_datasets_with_namespace=False,
    )
