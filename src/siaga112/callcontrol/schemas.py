"""API shapes for call control."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from siaga112.schemas import StrictInput


class TransferRequest(StrictInput):
    agency_id: int = Field(ge=1, le=2**31 - 1, examples=[1])


class CallActionOut(BaseModel):
    call_id: uuid.UUID
    action: Literal["hangup", "transfer"]
    # transfer: the digits dialled out through the carrier trunk.
    number: str | None = None
