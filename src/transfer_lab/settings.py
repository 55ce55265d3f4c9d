"""Project settings (https://docs.kedro.org/en/stable/kedro_project_setup/settings.html)."""

import os

import transfer_lab  # noqa: F401  (silences library noise before anything else loads)
from transfer_lab.hooks import TransferLabHooks

HOOKS = (TransferLabHooks(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
    # ${env:NAME,default} in any config file, e.g. MLFLOW_TRACKING_URI in mlflow.yml
    "custom_resolvers": {"env": lambda name, default=None: os.environ.get(name, default)},
}
