from kedro.pipeline import Pipeline, node

from .nodes import audit_features, label_issues_gallery, outliers_gallery


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(audit_features, ["features", "near_duplicates", "params:audit"],
                 ["audit_near_duplicates", "label_issues@csv", "audit_outliers", "audit_report"],
                 name="audit_features"),
            node(label_issues_gallery, ["label_issues@csv", "params:audit"], "label_issues_gallery",
                 name="label_issues_gallery"),
            node(outliers_gallery, ["audit_outliers", "params:audit"], "outliers_gallery", name="outliers_gallery"),
        ],
        namespace="audit",
        prefix_datasets_with_namespace=False,
    )
