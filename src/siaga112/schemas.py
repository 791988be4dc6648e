"""Shared pydantic building blocks for the API schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, StringConstraints

# Text typed by people: trimmed, bounded, no control characters other than newline and tab.
_NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_CONTROL)
]
Address = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=_NO_CONTROL)
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
MAX_YEAR = 2200


def _plausible_time(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"time must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible_time)]


class StrictInput(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


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
