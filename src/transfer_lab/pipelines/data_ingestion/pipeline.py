from kedro.pipeline import Pipeline, node

from .nodes import acquire_source, check_images, split_images, validate_parameters


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(validate_parameters, "params:data", "ingestion_params", name="validate_parameters"),
            node(acquire_source, "ingestion_params", ["ingestion_source", "refused_entries"], name="acquire_source"),
            node(check_images, ["ingestion_source", "refused_entries"], ["checked_images", "checked_rejected"],
                 name="check_images"),
            node(split_images, ["checked_images", "checked_rejected", "ingestion_source"],
                 ["manifest@csv", "rejected_images", "ingestion_summary"], name="split_images"),
        ],
        namespace="data_ingestion",
        prefix_datasets_with_namespace=False,
    )
