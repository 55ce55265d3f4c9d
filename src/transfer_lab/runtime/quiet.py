"""Keep library noise (TensorFlow, absl, MLflow, omegaconf, ...) out of the user's terminal.

Called once, on import of the package, before TensorFlow is imported anywhere.
Set ``TRANSFER_LAB_VERBOSE=1`` to see everything again.
"""

from __future__ import annotations

import logging
import os
import warnings

_DONE = False

_NOISY_LOGGERS = (
    "tensorflow",
    "absl",
    "h5py",
    "alembic",
    "mlflow",
    "urllib3",
    "matplotlib",
    "PIL",
    "git",
    "kedro_telemetry",
    "numexpr",
)


def silence() -> None:
    global _DONE
    if _DONE or os.environ.get("TRANSFER_LAB_VERBOSE") == "1":
        return
    _DONE = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING off, errors kept
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in (
        "tensorflow",
        "keras",
        "absl",
        "mlflow",
        "kedro_mlflow",
        "omegaconf",
        "pydantic",
        "google.protobuf",
        "h5py",
        "kedro_viz",
        "kedro.io",
        "kedro.framework",
        "kedro.config",
        "kedro.pipeline",
        "setuptools",
        "pkg_resources",
        "alembic",
        "sqlalchemy",
        "matplotlib",
    ):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*Protobuf gencode version.*")
    warnings.filterwarnings("ignore", message=".*is not a recognized dataset.*")
    warnings.filterwarnings("ignore", message=".*register_new_resolver.*")
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")
    try:  # absl prints "WARNING: All log messages before absl::InitializeLog()..." otherwise
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except Exception:  # absl comes with TensorFlow; nothing to do without it
        pass


def quiet_tensorflow() -> None:
    """Call right after importing TensorFlow: its Python logger resets its level on import."""
    if os.environ.get("TRANSFER_LAB_VERBOSE") == "1":
        return
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    try:
        tf.autograph.set_verbosity(0)
    except Exception:
        pass
