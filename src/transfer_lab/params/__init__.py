"""The project's parameters, one Pydantic model per top-level section of conf/base/parameters_*.yml.

``SECTIONS`` maps each section name to its model; importing this package fills it. Nodes take the
models in their type hints and Kedro validates ``params:<section>`` against them before any node
runs. See :mod:`transfer_lab.params.base`.
"""

from transfer_lab.params import (  # noqa: F401  (each module registers its section)
    adversarial,
    audit,
    backbone,
    data,
    evaluation,
    explain,
    export,
    feature_extraction,
    fine_tuning,
    head_training,
    inference,
    reporting,
    runtime,
    visualization,
)
from transfer_lab.params.base import SECTIONS, Params, section, unknown_key_message

__all__ = ["SECTIONS", "Params", "section", "unknown_key_message"]
