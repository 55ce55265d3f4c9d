"""adversarial: classes and images resolved -> attack -> (saved PNGs) -> read back, measure,
report; robustness curve. ``adversarial.model`` chooses finetuned | head | imagenet."""

from kedro.pipeline import Pipeline, node

from .nodes import attack_images, report, resolve_classes, robustness_curve

MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]
PARAMS = ["params:adversarial", "params:backbone"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                resolve_classes,
                inputs=PARAMS + ["manifest@csv", "class_names@lazy"] + MODELS,
                outputs="adversarial_classes",
                name="resolve_classes",
            ),
            node(
                attack_images,
                inputs=["adversarial_classes"] + PARAMS + ["manifest@csv"] + MODELS,
                outputs=["adversarial_images", "adversarial_records"],
                name="attack_images",
            ),
            node(
                robustness_curve,
                inputs=["adversarial_classes"] + PARAMS + ["manifest@csv"] + MODELS,
                outputs="adversarial_robustness",
                name="robustness_curve",
            ),
            node(
                report,
                inputs=["adversarial_classes", "adversarial_images", "adversarial_records", "adversarial_robustness"]
                + PARAMS + MODELS,
                outputs=["adversarial_metrics", "adversarial_table", "adversarial_figures"],
                name="report",
            ),
        ],
        namespace="adversarial",
        prefix_datasets_with_namespace=False,
    )
