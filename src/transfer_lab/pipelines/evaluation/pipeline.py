from kedro.pipeline import Pipeline, node

from .nodes import predict_images, report, scan_source, validate_parameters


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(validate_parameters, ["params:evaluation", "classifier_config"], "evaluation_config",
                 name="validate_parameters"),
            node(scan_source, "evaluation_config", ["evaluation_images", "evaluation_scan"], name="scan_source"),
            node(predict_images, ["finetuned_classifier@lazy", "evaluation_images", "evaluation_config"],
                 ["evaluation_probs", "evaluation_scored"], name="predict_images"),
            node(report, ["evaluation_probs", "evaluation_scored", "evaluation_scan", "classifier_config",
                          "evaluation_config"],
                 ["evaluation_report", "predictions", "evaluation_mistakes"], name="report"),
        ],
        namespace="evaluation",
        prefix_datasets_with_namespace=False,
    )
