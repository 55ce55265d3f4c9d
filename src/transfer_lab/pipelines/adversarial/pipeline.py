"""adversarial: parameters -> attack -> (saved PNGs) -> read back, measure, report; robustness curve."""

from kedro.pipeline import Pipeline, node

from .nodes import attack_images, check_parameters, report, robustness_curve


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                check_parameters,
                inputs=["params:adversarial", "params:backbone", "manifest@csv", "class_names@lazy"],
                outputs="adversarial_plan",
                name="check_parameters",
            ),
            node(
                attack_images,
                inputs=["adversarial_plan", "manifest@csv", "finetuned_classifier@lazy"],
                outputs=["adversarial_images", "adversarial_records"],
                name="attack_images",
            ),
            node(
                robustness_curve,
                inputs=["adversarial_plan", "manifest@csv", "finetuned_classifier@lazy"],
                outputs="adversarial_robustness",
                name="robustness_curve",
            ),
            node(
                report,
                inputs=["adversarial_plan", "adversarial_images", "adversarial_records", "adversarial_robustness", "finetuned_classifier@lazy"],
                outputs=["adversarial_metrics", "adversarial_table", "adversarial_figures"],
                name="report",
            ),
        ],
        namespace="adversarial",
        prefix_datasets_with_namespace=False,
    )
