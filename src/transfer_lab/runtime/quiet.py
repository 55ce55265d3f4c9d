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


#: Lines TensorFlow's C++ side writes straight to the stderr file descriptor when it loads (absl's
#: pre-initialisation notice, oneDNN and CPU-feature notes), where no logging setting reaches them.
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized",
    "Unable to register cu",  # cuDNN/cuFFT/cuBLAS factory notes on GPU wheels
)


def import_tensorflow() -> None:
    """Import TensorFlow once with its native start-up notes dropped (other stderr lines are kept).

    The notes go to file descriptor 2 from C++, so the descriptor is pointed at a temporary file for
    the import and what TensorFlow wrote there is replayed without them."""
    import sys
    import tempfile

    if "tensorflow" in sys.modules or os.environ.get("TRANSFER_LAB_VERBOSE") == "1":
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): import as it is
        import tensorflow  # noqa: F401
        quiet_tensorflow()
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(noise in line for noise in NATIVE_NOISE)]
            if kept:
                sys.stderr.write("".join(kept))
    quiet_tensorflow()
