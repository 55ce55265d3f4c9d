"""serving (run after head_training, or fine_tuning for inference.model=finetuned):
features + head -> unfamiliar_stats; classifier + stats -> the registered serving model."""

from kedro.pipeline import Pipeline, node

from .nodes import fit_unfamiliar_stats, log_serving_model

MODELS = ["finetuned_classifier@lazy", "head_classifier@lazy"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(fit_unfamiliar_stats, ["features", "head", "params:unfamiliar"],
                 ["unfamiliar_stats@npz", "unfamiliar_summary"], name="fit_unfamiliar_stats"),
            node(log_serving_model, ["unfamiliar_stats@npz", "classifier_config", "head_metrics", "features",
                                     "params:inference", "params:data"] + MODELS + ["params:runtime"],
                 "serving_model_info", name="log_serving_model"),
        ],
        namespace="serving",
        prefix_datasets_with_namespace=False,
    )
