from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from siaga112.api.deps import Reader, RequestId, SessionDep
from siaga112.callers import service
from siaga112.callers.schemas import CallerCallOut, CallerHistoryOut, CallerIncidentOut
from siaga112.schemas import ERROR_RESPONSES, ErrorOut

router = APIRouter(tags=["callers"], responses=ERROR_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=200, description="calls and incidents listed, each")]
_422: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorOut,
        "description": "`caller_id_unavailable`: no number to look up (anonymous, restricted, "
        "no SIM); `validation_error`: not a phone number",
    }
}
_DESCRIPTION = (
    "Calls (time, state, outcome), incidents and how they were classified (emergency, prank, "
    "ghost ...), and when the number was last seen; the number in any form (+62812..., "
    "62812..., 0812...). Anonymous callers have no history: 422 `caller_id_unavailable`. "
    "Every read is audited (`caller.history.read`)."
)


def _out(history: service.CallerHistory) -> CallerHistoryOut:
    return CallerHistoryOut(
        number=history.number,
        calls_total=history.calls_total,
        incidents_total=history.incidents_total,
        classifications=history.classifications,
        last_seen=history.last_seen,
        calls=[CallerCallOut.model_validate(c) for c in history.calls],
        incidents=[CallerIncidentOut.model_validate(i) for i in history.incidents],
    )


@router.get(
    "/callers/{number}/history",
    response_model=CallerHistoryOut,
    responses=_422,
    summary="A caller's history by number",
    description=_DESCRIPTION,
)
async def caller_history(
    number: Annotated[str, Path(max_length=40)],
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    limit: Limit = 20,
) -> CallerHistoryOut:
    history = await service.caller_history(
        session=session, number=number, limit=limit, actor=actor, request_id=rid
    )
    await session.commit()
    return _out(history)


@router.get(
    "/calls/{call_id}/caller-history",
    response_model=CallerHistoryOut,
    responses=_422 | {404: {"model": ErrorOut, "description": "no such call"}},
    summary="The history of a call's caller (e.g. while the call waits in the queue)",
    description=_DESCRIPTION
    + " The number is the call's network-asserted identity, else its caller ID.",
)
async def call_caller_history(
    call_id: uuid.UUID,
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    limit: Limit = 20,
) -> CallerHistoryOut:
    history = await service.history_for_call(
        session=session, call_id=call_id, limit=limit, actor=actor, request_id=rid
    )
    await session.commit()
    return _out(history)
