"""API shapes for call control."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agency_id: int = Field(ge=1, le=2**31 - 1, examples=[1])


class CallActionOut(BaseModel):
    call_id: uuid.UUID
    action: Literal["hangup", "transfer"]
    # transfer: the digits dialled out through the carrier trunk.
    number: str | None = None
