"""Which device TensorFlow runs on, said once at start and logged to MLflow."""

from __future__ import annotations

import logging
import os
import random

import numpy as np

log = logging.getLogger(__name__)


def describe_devices() -> dict[str, str | int]:
    import tensorflow as tf

    from transfer_lab.runtime.quiet import quiet_tensorflow

    quiet_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        except Exception:
            names.append(gpu.name)
    return {
        "device": ("GPU: " + ", ".join(names)) if gpus else f"CPU ({os.cpu_count()} cores)",
        "n_gpus": len(gpus),
        "tensorflow": tf.__version__,
    }


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras for a reproducible run."""
    import keras

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(int(seed))
