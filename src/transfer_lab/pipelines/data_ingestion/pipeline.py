from kedro.pipeline import Pipeline, node

from .nodes import acquire_source, check_images, split_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(acquire_source, "params:data", ["source_folder", "refused_entries"], name="acquire_source"),
            node(check_images, ["source_folder", "refused_entries", "params:data"],
                 ["checked_images", "checked_rejected"], name="check_images"),
            node(split_images, ["checked_images", "checked_rejected", "params:data"],
                 ["manifest@csv", "rejected_images", "ingestion_summary", "near_duplicates"], name="split_images"),
        ],
        namespace="data_ingestion",
        prefix_datasets_with_namespace=False,
    )
