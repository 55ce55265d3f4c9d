"""Field helpers shared by the parameter models: messages that name the full key, and the value
types the YAML and ``--params`` give (``true``/``false``, ``auto | true | false``).

A model that subclasses :class:`KeyedParams` turns every field error into one sentence: the full
key and the value given, what is wrong, the fix (the field's ``description``) and a ``--params``
example (its ``examples``), e.g.::

    head_training.dropout=1.0 is not valid: input should be less than 1. Fraction of the head's
    inputs dropped while training, 0 (none) to below 1. E.g. --params "head_training.dropout=0.2".

A ``ValueError`` raised by a field's own validator is its message already and is kept as it is;
errors of a nested model (a field whose type is a :class:`Params`) keep that model's messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator

from transfer_lab.params.base import Params


def _true_or_false(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("must be true or false")


def _auto_true_false(value: Any) -> Any:
    if value is None:
        return "auto"
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return _true_or_false(value)
    except ValueError:
        raise ValueError("use auto, true or false") from None


#: A boolean that is written ``true`` or ``false`` (not ``yes``, 1 or "on").
TrueFalse = Annotated[bool, BeforeValidator(_true_or_false)]
#: ``auto`` (the runtime decides), ``true`` or ``false``; ``null`` = auto.
AutoTrueFalse = Annotated[Literal["auto"] | bool, BeforeValidator(_auto_true_false)]


def param(default: Any, fix: str, example: Any = None, **constraints: Any) -> Any:
    """A field with its default, the fix said when a value is refused, and a ``--params`` example."""
    return Field(default, description=fix, examples=[default if example is None else example], **constraints)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


class KeyedParams(Params):
    """:class:`Params` whose field errors name the full key, the value, the fix and an example."""

    @field_validator("*", mode="wrap")
    @classmethod
    def _name_the_key(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        annotation = getattr(field, "annotation", None)
        key = f"{cls.where}.{info.field_name}" if cls.where else str(info.field_name)
        if isinstance(value, bool) and annotation in (int, float):
            what = "it must be a number, not true or false"
        else:
            try:
                return handler(value)
            except ValidationError as exc:
                if isinstance(annotation, type) and issubclass(annotation, Params):
                    raise  # the nested model's own messages name its keys
                err = exc.errors()[0]
                what = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
                if err["type"] == "value_error" and what.startswith(key):
                    raise ValueError(what) from None  # a message of our own, complete
        what = what[:1].lower() + what[1:]
        fix = f" {field.description.rstrip('.')}." if field is not None and field.description else ""
        examples = getattr(field, "examples", None)
        eg = f" E.g. --params \"{key}={_text(examples[0])}\"." if examples else ""
        raise ValueError(f"{key}={_text(value)} is not valid: {what}.{fix}{eg}")
