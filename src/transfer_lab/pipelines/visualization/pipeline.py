"""visualization: parameters -> feature maps of a photo; parameters -> ideal image per class + report."""

from kedro.pipeline import Pipeline, node

from .nodes import check_parameters, draw_feature_maps, generate_ideal_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                check_parameters,
                inputs=["params:visualization", "params:backbone", "class_names@lazy", "finetuned_classifier@lazy",
                        "manifest@lazy"],
                outputs="visualization_plan",
                name="check_parameters",
            ),
            node(
                draw_feature_maps,
                inputs=["visualization_plan", "finetuned_classifier@lazy"],
                outputs="visualization_feature_maps",
                name="draw_feature_maps",
            ),
            node(
                generate_ideal_images,
                inputs=["visualization_plan", "finetuned_classifier@lazy"],
                outputs=["ideal_images", "ideal_images_grid", "ideal_images_metrics"],
                name="generate_ideal_images",
            ),
        ],
        namespace="visualization",
        prefix_datasets_with_namespace=False,
    )
