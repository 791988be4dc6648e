"""Shared pydantic building blocks for the API schemas."""

from __future__ import annotations

import re
import types
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# Text typed by people: trimmed, bounded, no control characters other than newline and tab.
_NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_CONTROL)
]
Address = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=_NO_CONTROL)
]
# What the caller says is near (a mosque, a market, a school); incidents.landmark is 300.
Landmark = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300, pattern=_NO_CONTROL)
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=_NO_CONTROL),
]
PhoneNumber = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=32, pattern=r"^\+?[0-9*#]{1,32}$"
    ),
]
Code = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=40, pattern=r"^[a-z][a-z0-9_]*$"
    ),
]


# Times in filters, reports and bodies: with a UTC offset (a naive time is refused, never
# guessed), between these years once in UTC (year 1 with +05:00 does not exist in UTC, and
# the database would fail on it).
MIN_YEAR = 1900
MAX_YEAR = 3000


def plausible_time(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"time must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(plausible_time)]


# Any text from outside: no NUL (PostgreSQL cannot store it) and no control characters other
# than tab, newline and carriage return, in any field.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What the database's bigint holds; any integer from outside beyond it is refused.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_UNCHECKED = object


def _json_kinds(annotation: Any) -> set[type]:
    """The JSON scalar types a field's annotation accepts as such; `object` when it accepts
    something else (a string for a datetime, a nested model, an enum) and pydantic decides."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _json_kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_json_kinds(a) for a in get_args(annotation)))
    if origin is Literal:
        return {type(v) for v in get_args(annotation)}
    if annotation is type(None):
        return {type(None)}
    if annotation is bool:
        return {bool}
    if annotation is int:
        return {int}
    if annotation is float:
        return {int, float}
    if annotation is str:
        return {str}
    return {_UNCHECKED}


def _error(name: str, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("strict_type", message), loc=(name,), input=value
    )


def _bad_scalar(value: Any) -> str | None:
    if isinstance(value, str) and _CONTROL.search(value):
        return "text must not contain NUL or control characters"
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        return "number out of range"
    if isinstance(value, dict):
        return next((m for v in (*value.keys(), *value.values()) if (m := _bad_scalar(v))), None)
    if isinstance(value, list):
        return next((m for v in value if (m := _bad_scalar(v))), None)
    return None


class StrictInput(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped; JSON types are taken
    as they are (`true` is no number, `"yes"` and `1` are no boolean, `"5"` is no integer);
    no NUL or control characters in any text; no integer beyond the database's bigint."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _strict_json(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        errors: list[InitErrorDetails] = []
        for name, info in cls.model_fields.items():
            key = info.alias or name
            if key not in data:
                continue
            value = data[key]
            if (problem := _bad_scalar(value)) is not None:
                errors.append(_error(key, problem, value))
                continue
            kinds = _json_kinds(info.annotation)
            if _UNCHECKED in kinds or value is None:
                continue
            # bool is an int to Python; JSON keeps them apart, and so does this.
            kind = type(value)
            if kind not in kinds and not (kind is int and float in kinds):
                expected = " or ".join(sorted(k.__name__ for k in kinds))
                errors.append(_error(key, f"expected {expected}, not {kind.__name__}", value))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "invalid_transition",
                    "message": "status cannot go from closed to dispatched",
                    "details": [{"field": "body.status", "allowed": []}],
                }
            ]
        }
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorOut, "description": "the key's role may not do this"},
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ErrorOut, "description": "invalid input; `details` names the fields"},
}
