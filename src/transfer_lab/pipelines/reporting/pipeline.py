from kedro.pipeline import Pipeline, node

from .nodes import build_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_report,
                ["ingestion_summary", "feature_extraction_report", "head_metrics", "finetune_metrics",
                 "ideal_images_metrics", "adversarial_metrics", "params:reporting"],
                "run_report",
                name="build_report",
            ),
        ],
        namespace="reporting",
        prefix_datasets_with_namespace=False,
    )
