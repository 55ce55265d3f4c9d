from kedro.pipeline import Pipeline, node

from .nodes import extract_features, feature_map_figure, validate_parameters


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(validate_parameters, ["params:backbone", "params:feature_extraction"], "feature_extraction_config",
                 name="validate_parameters"),
            node(extract_features, ["manifest@csv", "feature_extraction_config", "features_cache", "params:runtime"],
                 ["features", "feature_extraction_report"], name="extract_features"),
            node(feature_map_figure, ["manifest@csv", "feature_extraction_config"], "feature_maps_figure",
                 name="feature_map_figure"),
        ],
        namespace="feature_extraction",
        prefix_datasets_with_namespace=False,
    )
