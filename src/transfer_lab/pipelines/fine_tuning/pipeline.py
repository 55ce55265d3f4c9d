from kedro.pipeline import Pipeline, node

from .nodes import evaluate, fine_tune


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(fine_tune,
                 ["head_classifier@keras", "manifest@csv", "class_names@json", "classifier_config",
                  "params:fine_tuning", "params:backbone", "params:head_training", "params:runtime"],
                 ["finetuned_classifier@keras", "finetune_history", "finetune_summary"], name="fine_tune"),
            node(evaluate,
                 ["head_classifier@keras", "finetuned_classifier@keras", "manifest@csv", "class_names@json",
                  "params:fine_tuning", "finetune_summary", "finetune_history", "head_metrics", "params:runtime"],
                 ["finetune_metrics", "finetune_comparison", "finetune_comparison_table",
                  "finetune_confusion_matrix", "finetune_curves", "finetune_comparison_figure"],
                 name="evaluate"),
        ],
        namespace="fine_tuning",
        prefix_datasets_with_namespace=False,
    )
