from kedro.pipeline import Pipeline, node

from .nodes import assemble_classifier, evaluate_head, train_head


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(train_head, ["features", "params:head_training", "params:runtime", "label_issues@lazy"],
                 ["head", "head_history"],
                 name="train_head"),
            node(evaluate_head, ["head", "features", "head_history"],
                 ["head_metrics", "head_confusion_matrix", "head_training_curves"], name="evaluate_head"),
            node(assemble_classifier, ["head", "params:backbone", "features"],
                 ["head_classifier@keras", "class_names@json", "classifier_config"], name="assemble_classifier"),
        ],
        namespace="head_training",
        prefix_datasets_with_namespace=False,
    )
