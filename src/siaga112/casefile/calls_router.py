"""`GET /v1/calls`: calls, newest first, found by state, time or number (in the forms people
type); `GET /v1/calls/{id}`: one call with its recordings."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query

from siaga112.api.deps import Reader, RequestId, SessionDep
from siaga112.callers.matching import calls_of_number
from siaga112.callers.service import audit_number_search
from siaga112.calls import service
from siaga112.calls.schemas import CallOut, CallPage
from siaga112.casefile.schemas import CallDetailOut
from siaga112.recordings.schemas import RecordingOut
from siaga112.recordings.service import list_for_call
from siaga112.schemas import ERROR_RESPONSES, ErrorOut, Timestamp

router = APIRouter(prefix="/calls", tags=["calls"], responses=ERROR_RESPONSES)


class CallState(StrEnum):
    OFFERED = "offered"
    QUEUED = "queued"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    ABANDONED = "abandoned"


@router.get("", response_model=CallPage, summary="List calls, newest first")
async def list_calls(
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    state: Annotated[list[CallState] | None, Query()] = None,
    caller_number: Annotated[str | None, Query(max_length=32, pattern=r"^\+?[0-9*#]+$")] = None,
    offered_from: Annotated[Timestamp | None, Query()] = None,
    offered_to: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CallPage:
    rows, next_cursor = await service.list_calls(
        session=session,
        state=[s.value for s in state] if state else None,
        caller=calls_of_number(caller_number) if caller_number is not None else None,
        offered_from=offered_from,
        offered_to=offered_to,
        limit=limit,
        cursor=cursor,
    )
    if caller_number is not None:
        await audit_number_search(
            session=session,
            actor=actor,
            number=caller_number,
            via="calls.list",
            results=len(rows),
            request_id=rid,
        )
        await session.commit()
    return CallPage(items=[CallOut.model_validate(r) for r in rows], next_cursor=next_cursor)


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
