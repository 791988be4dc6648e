"""API shapes for the callback worklist."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from siaga112.schemas import Output, ShortText, StrictInput

CallbackStatus = Literal[
    "pending", "in_progress", "reached", "no_answer", "busy", "failed", "not_needed"
]
AttemptOutcome = Literal[
    "reached", "no_answer", "busy", "failed", "operator_unavailable", "not_placed"
]


class CallbackOut(Output):
    call_id: uuid.UUID = Field(description="the abandoned or silent call; the worklist item's id")
    incident_id: int | None
    number: str = Field(description="the number called back (the call's callback number)")
    reason: Literal["abandoned", "silent"] = Field(
        description="abandoned in the queue, or an incident classified ghost (silent call)"
    )
    status: CallbackStatus
    offered_at: datetime
    ended_at: datetime | None
    waited_s: float | None = Field(description="time in the queue before an answer or the hang-up")
    queue: str | None
    attempts: int
    last_attempt_at: datetime | None
    last_attempt_by: str | None = Field(description="operator extension of the last attempt")
    last_outcome: AttemptOutcome | None
    claimed_by: str | None = Field(description="who is calling back now (in_progress only)")
    operator_extension: str | None = Field(description="whose phone (in_progress only)")
    claim_expires_at: datetime | None
    reached_at: datetime | None
    answered_later_call_id: uuid.UUID | None = Field(
        description="a later call from the same number answered by an operator (not_needed)"
    )
    note: str | None


class CallbackPage(Output):
    items: list[CallbackOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")
    anonymous: int = Field(
        description="calls within the same filters that came without a number (anonymous, "
        "restricted, no SIM): they cannot be called back and are not listed"
    )


class AttemptOut(Output):
    id: int
    operator_extension: str
    actor: str
    number: str
    dialled: str = Field(description="the digits dialled out through the carrier trunk")
    started_at: datetime
    expires_at: datetime
    originated: bool | None = Field(description="the operator's phone answered (or not)")
    originate_reason: int | None
    operator_answered_at: datetime | None
    dial_status: str | None = Field(description="the caller's leg: Asterisk's DIALSTATUS")
    dial_ended_at: datetime | None
    ended_at: datetime | None
    hangup_cause: str | None
    outcome: AttemptOutcome | None = Field(description="null while the attempt is under way")
    decided_at: datetime | None


class CallbackDetail(CallbackOut):
    attempt_list: list[AttemptOut] = Field(description="newest first")


class CallbackRequest(StrictInput):
    operator_extension: str = Field(
        pattern=r"^[0-9]{1,8}$",
        examples=["6001"],
        description="the operator whose phone rings first; the caller is dialled once it answers",
    )
    force: bool = Field(
        default=False, description="call even though the status is reached or not_needed"
    )


class AttemptStarted(Output):
    call_id: uuid.UUID
    attempt_id: int
    status: Literal["in_progress"] = "in_progress"
    operator_extension: str
    number: str
    dialled: str
    expires_at: datetime = Field(
        description="the attempt is closed as failed if Asterisk reports no outcome by then"
    )


class DismissRequest(StrictInput):
    note: ShortText = Field(examples=["Pelapor sudah menghubungi kembali lewat WhatsApp"])
