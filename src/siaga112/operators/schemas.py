"""API shapes for operators and their queue sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from siaga112.schemas import StrictInput

OperatorStateName = Literal["idle", "ringing", "in_call", "paused", "offline", "logged_out"]


class OperatorCreate(StrictInput):
    extension: str = Field(pattern=r"^[1-9][0-9]{2,7}$", examples=["7001"])
    name: str = Field(min_length=1, max_length=200, examples=["Siti Rahayu"])


class OperatorUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None


class PauseRequest(StrictInput):
    reason: str = Field(
        min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$", examples=["break"]
    )


class OperatorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    extension: str
    name: str
    enabled: bool
    logged_in: bool
    paused: bool
    pause_reason: str | None
    created_at: datetime
    updated_at: datetime
    # From Asterisk (AMI QueueStatus) at the time of the request; null when AMI is not there.
    state: OperatorStateName | None = None


class SipAccount(BaseModel):
    """Shown once, in the create response only: only an md5 digest is stored."""

    username: str
    password: str
    registrar: str
    transport: Literal["udp"] = "udp"


class OperatorCreated(OperatorOut):
    sip: SipAccount
