from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from siaga112.schemas import Output, PhoneNumber, StrictInput

Reason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=3,
        max_length=500,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
    ),
]


class FlagKind(StrEnum):
    PRANK = "prank"
    NUISANCE = "nuisance"
    SILENT = "silent"
    ABUSIVE = "abusive"


class FlagCreate(StrictInput):
    number: PhoneNumber = Field(description="the caller's number; stored as +62...")
    kind: FlagKind
    reason: Reason
    hours: int = Field(default=24, ge=1, le=24 * 365, description="how long the flag holds")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "081234567890",
                    "kind": "prank",
                    "hours": 72,
                    "reason": "5 panggilan iseng dalam 1 jam, tertawa lalu menutup telepon",
                }
            ]
        }
    )


class Evidence(Output):
    calls: int
    by_classification: dict[str, int]
    first_call_at: datetime | None
    last_call_at: datetime | None


class FlagOut(Output):
    id: int
    number: str
    kind: FlagKind
    reason: str
    expires_at: datetime
    active: bool
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    evidence: Evidence | None = Field(
        default=None, description="the number's calls and how their incidents were classified"
    )
