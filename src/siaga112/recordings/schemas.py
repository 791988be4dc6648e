from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from siaga112.schemas import Output, StrictInput

HoldReason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=3,
        max_length=500,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
    ),
]


class RecordingOut(Output):
    id: int
    call_id: uuid.UUID | None
    format: str = Field(description="wav (16-bit PCM, 8 kHz) or wav49 (GSM in WAV)")
    started_at: datetime = Field(description="the operator answered; recording began")
    ended_at: datetime = Field(description="the last audio written")
    duration_s: float | None
    size_bytes: int
    sha256: str | None = Field(description="of the file as Asterisk wrote it")
    status: str = Field(description="available, or purged (retention)")
    legal_hold: bool
    legal_hold_reason: str | None
    purged_at: datetime | None
    download_url: str | None = Field(
        default=None,
        description="GET it with a supervisor or admin key (audited); null once purged",
    )

    @model_validator(mode="after")
    def _url(self) -> RecordingOut:
        if self.download_url is None and self.status == "available":
            self.download_url = f"/v1/recordings/{self.id}/audio"
        return self


class LegalHoldIn(StrictInput):
    hold: bool = Field(description="true: never purge this recording; false: lift the hold")
    reason: HoldReason | None = Field(
        default=None, description="required to set a hold: case number, requesting authority"
    )

    @model_validator(mode="after")
    def _reason_with_hold(self) -> LegalHoldIn:
        if self.hold and not self.reason:
            raise ValueError("a legal hold needs a reason")
        return self
