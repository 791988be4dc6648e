"""`GET /v1/calls/{id}`: one call with its recordings."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from siaga112.api.deps import Reader, SessionDep
from siaga112.calls import service
from siaga112.calls.schemas import CallOut
from siaga112.casefile.schemas import CallDetailOut
from siaga112.recordings.schemas import RecordingOut
from siaga112.recordings.service import list_for_call
from siaga112.schemas import ERROR_RESPONSES, ErrorOut

router = APIRouter(prefix="/calls", tags=["calls"], responses=ERROR_RESPONSES)


@router.get(
    "/{call_id}",
    response_model=CallDetailOut,
    summary="One call, with its recordings",
    responses={404: {"model": ErrorOut, "description": "no such call"}},
)
async def get_call(call_id: uuid.UUID, session: SessionDep, _: Reader) -> CallDetailOut:
    call = await service.get_call(session=session, call_id=call_id)
    recordings = await list_for_call(session=session, call_id=call_id)
    return CallDetailOut(
        **CallOut.model_validate(call).model_dump(),
        recordings=[RecordingOut.model_validate(r) for r in recordings],
    )
