"""/v1/calls/{id}/recording(s) and /v1/recordings/{id}: recording metadata for readers; the
audio itself and legal hold for supervisors and admins only, every download audited."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse

from siaga112.api.deps import Reader, RequestId, SessionDep, require
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor
from siaga112.recordings import service
from siaga112.recordings.models import Recording
from siaga112.recordings.schemas import LegalHoldIn, RecordingOut
from siaga112.schemas import ERROR_RESPONSES, ErrorOut

router = APIRouter(tags=["recordings"], responses=ERROR_RESPONSES)

RecordingReviewer = Annotated[Actor, Depends(require(Permission.RECORDINGS))]
RecordingId = Annotated[int, Path(ge=1, le=2**62)]

_AUDIO: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"audio/wav": {}},
        "description": "the recording as Asterisk wrote it (WAV: PCM or GSM); Range supported",
    },
    403: {"model": ErrorOut, "description": "only supervisors and admins may listen"},
    404: {
        "model": ErrorOut,
        "description": "no such call, no recording, or deleted after the retention period",
    },
}
_MEDIA_TYPES = {"wav": "audio/wav", "wav49": "audio/wav"}


async def _stream(
    request: Request,
    session: SessionDep,
    recording: Recording,
    actor: Actor,
    rid: str | None,
) -> FileResponse:
    path = await service.open_for_download(
        session=session,
        recording=recording,
        root=request.app.state.settings.recordings_dir,
        actor=actor,
        request_id=rid,
    )
    # Audited before a byte leaves.
    await session.commit()
    stamp = f"{recording.started_at:%Y%m%dT%H%M%SZ}"
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES.get(recording.format, "application/octet-stream"),
        filename=f"siaga112-call-{recording.call_id or recording.uniqueid}-{stamp}.wav",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/calls/{call_id}/recordings",
    response_model=list[RecordingOut],
    summary="A call's recordings (metadata), oldest first",
    description="One per operator answer (a call that went back to the queue after a failed "
    "transfer has two). Metadata only; the audio needs a supervisor or admin key.",
)
async def list_call_recordings(
    call_id: uuid.UUID, session: SessionDep, _: Reader
) -> list[RecordingOut]:
    rows = await service.list_for_call(session=session, call_id=call_id)
    return [RecordingOut.model_validate(r) for r in rows]


@router.get(
    "/calls/{call_id}/recording",
    response_class=FileResponse,
    responses=_AUDIO,
    summary="Download a call's recording (supervisor, admin; audited)",
    description="The call's first recording (the first operator's answer); others by id at "
    "`/v1/recordings/{id}/audio`. Every download is written to the audit log "
    "(`recording.downloaded`: who, when, which call).",
)
async def download_call_recording(
    call_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    actor: RecordingReviewer,
    rid: RequestId,
) -> FileResponse:
    recording = await service.recording_of_call(session=session, call_id=call_id)
    return await _stream(request, session, recording, actor, rid)


@router.get(
    "/recordings/{recording_id}",
    response_model=RecordingOut,
    summary="One recording (metadata)",
    responses={404: {"model": ErrorOut, "description": "no such recording"}},
)
async def get_recording(recording_id: RecordingId, session: SessionDep, _: Reader) -> RecordingOut:
    row = await service.get_recording(session=session, recording_id=recording_id)
    return RecordingOut.model_validate(row)


@router.get(
    "/recordings/{recording_id}/audio",
    response_class=FileResponse,
    responses=_AUDIO,
    summary="Download one recording (supervisor, admin; audited)",
)
async def download_recording(
    recording_id: RecordingId,
    request: Request,
    session: SessionDep,
    actor: RecordingReviewer,
    rid: RequestId,
) -> FileResponse:
    recording = await service.get_recording(session=session, recording_id=recording_id)
    return await _stream(request, session, recording, actor, rid)


@router.put(
    "/recordings/{recording_id}/legal-hold",
    response_model=RecordingOut,
    summary="Keep a recording past the retention period, or lift that (supervisor, admin)",
    responses={409: {"model": ErrorOut, "description": "already deleted (retention)"}},
)
async def put_legal_hold(
    recording_id: RecordingId,
    data: LegalHoldIn,
    session: SessionDep,
    actor: RecordingReviewer,
    rid: RequestId,
) -> RecordingOut:
    row = await service.set_legal_hold(
        session=session,
        recording_id=recording_id,
        hold=data.hold,
        reason=data.reason,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    return RecordingOut.model_validate(row)
