from kedro.pipeline import Pipeline, node

from .nodes import extract_features, feature_map_figure


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(extract_features, ["manifest@csv", "params:backbone", "params:feature_extraction", "params:runtime"],
                 ["features", "feature_extraction_report"], name="extract_features"),
            node(feature_map_figure, ["manifest@csv", "params:backbone", "params:feature_extraction"],
                 "feature_maps_figure", name="feature_map_figure"),
        ],
        namespace="feature_extraction",
        prefix_datasets_with_namespace=False,
    )
