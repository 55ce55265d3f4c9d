"""visualization: classes and layers resolved on the chosen model -> feature maps of a photo;
-> ideal image per class + report. ``visualization.model`` chooses finetuned | head | imagenet."""

from kedro.pipeline import Pipeline, node

from .nodes import draw_feature_maps, generate_ideal_images, resolve_targets

MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]
PARAMS = ["params:visualization", "params:backbone"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                resolve_targets,
                inputs=PARAMS + ["class_names@lazy"] + MODELS + ["manifest@lazy"],
                outputs=["ideal_targets", "feature_map_layers"],
                name="resolve_targets",
            ),
            node(
                draw_feature_maps,
                inputs=["feature_map_layers"] + PARAMS + MODELS,
                outputs="visualization_feature_maps",
                name="draw_feature_maps",
            ),
            node(
                generate_ideal_images,
                inputs=["ideal_targets"] + PARAMS + MODELS + ["manifest@lazy", "params:runtime"],
                outputs=["ideal_images", "ideal_images_grid", "ideal_images_metrics"],
                name="generate_ideal_images",
            ),
        ],
        namespace="visualization",
        prefix_datasets_with_namespace=False,
    )
