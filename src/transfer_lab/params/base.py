"""What every parameter group has in common.

Each top-level section of ``conf/base/parameters_<pipeline>.yml`` (``data``, ``backbone``,
``fine_tuning``, ...) is one Pydantic model, a subclass of :class:`Params` registered with
:func:`section`. Nodes take those models in their type hints (``def fine_tune(..., params:
FineTuningParams)``) and Kedro validates and converts ``params:<section>`` before any node runs
(Kedro docs: configure/parameter_validation).

A key that is not a field is refused, naming the key, the closest field ("did you mean") and
the fields there are, with the fix. The project hook refuses an unknown section (``--params
"head_trainin.l2=0.5"``) the same way, before anything runs.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

#: section name -> its model, e.g. {"data": DataParams}; filled by @section.
SECTIONS: dict[str, type["Params"]] = {}


def unknown_key_message(key: str, known: list[str], where: str, conf_file: str | None = None) -> str:
    """One message for a key that is not a parameter: the key, a close match, the known keys, the fix."""
    full = f"{where}.{key}" if where else key
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" Did you mean {(where + '.') if where else ''}{near[0]}?" if near else ""
    fix = f" Fix it in conf/base/{conf_file}" if conf_file else " Fix it in conf/base/parameters_*.yml"
    if where:
        example = f"{where}.{near[0] if near else known[0]}=..." if known else ""
    else:  # a top-level section: the example names a key under the closest one
        example = f"{near[0] if near else (sorted(known) or ['data'])[0]}.<key>=..."
    return (f"{full} is not a parameter.{hint} Known{' in ' + where if where else ' sections'}: "
            f"{', '.join(sorted(known))}.{fix} or in --params (e.g. --params \"{example}\").")


class Params(BaseModel):
    """Base of every parameter model: immutable, and unknown keys are refused with a clear message."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    #: dotted place of this model in the parameters, e.g. "data" or "data.split" (for messages)
    where: ClassVar[str] = ""
    #: the YAML file that holds it (for messages)
    conf_file: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [name for name in cls.model_fields]
            aliases = [f.alias for f in cls.model_fields.values() if f.alias]
            unknown = [k for k in data if k not in known and k not in aliases]
            if unknown:
                raise ValueError(" ".join(unknown_key_message(str(k), known, cls.where, cls.conf_file)
                                          for k in sorted(map(str, unknown))))
        return data


def section(name: str, conf_file: str | None = None):
    """Class decorator: register a :class:`Params` model as the top-level section ``name``."""

    def register(cls: type[Params]) -> type[Params]:
        cls.where = name
        cls.conf_file = conf_file or cls.conf_file
        SECTIONS[name] = cls
        return cls

    return register
