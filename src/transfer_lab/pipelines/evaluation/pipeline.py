"""evaluation: the folder scanned (after checking the chosen classifier exists) -> probabilities
-> report. ``evaluation.model`` chooses finetuned | head."""

from kedro.pipeline import Pipeline, node

from .nodes import flag_unfamiliar, predict_images, report, scan_source

MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(scan_source, ["params:evaluation", "classifier_config"] + MODELS,
                 ["evaluation_images", "evaluation_scan"], name="scan_source"),
            node(predict_images, ["evaluation_images", "params:evaluation"] + MODELS + ["evaluation_scan"],
                 ["evaluation_probs", "evaluation_scored"], name="predict_images"),
            node(report, ["evaluation_probs", "evaluation_scored", "evaluation_scan", "classifier_config",
                          "params:evaluation"] + MODELS,
                 ["evaluation_report", "predictions", "evaluation_mistakes"], name="report"),
            node(flag_unfamiliar, ["evaluation_scored", "unfamiliar_stats@lazy", "params:evaluation",
                                   "head_classifier@lazy"],
                 ["evaluation_unfamiliar", "evaluation_unfamiliar_gallery"], name="flag_unfamiliar"),
        ],
        namespace="evaluation",
        prefix_datasets_with_namespace=False,
    )
