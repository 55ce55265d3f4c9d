from kedro.pipeline import Pipeline, node

from .nodes import assemble_classifier, evaluate_head, train_head, validate_parameters


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(validate_parameters, ["params:backbone", "params:head_training"], "head_training_config",
                 name="validate_parameters"),
            node(train_head, ["features", "head_training_config", "params:runtime"], ["head", "head_history"],
                 name="train_head"),
            node(evaluate_head, ["head", "features", "head_history"],
                 ["head_metrics", "head_confusion_matrix", "head_training_curves"], name="evaluate_head"),
            node(assemble_classifier, ["head", "params:backbone", "features"],
                 ["head_classifier@keras", "class_names@json", "classifier_config"], name="assemble_classifier"),
        ],
        namespace="head_training",
        prefix_datasets_with_namespace=False,
    )
