"""reporting: data/08_reporting/report/ (report.md and the figures it embeds) from what the other
pipelines wrote, all read by catalog name."""

from kedro.pipeline import Pipeline, node

from .nodes import build_report

REPORTS = ["ingestion_summary", "feature_extraction_report", "audit_report", "head_metrics", "finetune_metrics",
           "unfamiliar_summary", "serving_model_info", "explanations_report", "ideal_images_metrics",
           "adversarial_metrics"]
FIGURES = ["feature_maps_figure", "label_issues_gallery", "outliers_gallery", "head_confusion_matrix",
           "head_training_curves", "finetune_confusion_matrix", "finetune_curves", "finetune_comparison_figure",
           "explanations_gallery", "ideal_images_grid", "adversarial_figures"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [node(build_report, REPORTS + FIGURES + ["run_timings", "export_report"], "run_report", name="build_report")],
        namespace="reporting",
        prefix_datasets_with_namespace=False,
    )
