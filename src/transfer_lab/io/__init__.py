"""Files: the project's Kedro datasets, MLflow tracking, atomic writes."""
