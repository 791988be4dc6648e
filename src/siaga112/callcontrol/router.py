"""/v1/calls/{call_id}/hangup and /transfer: operators act on live calls."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from siaga112.api.deps import IncidentWriter, RequestId, SessionDep
from siaga112.callcontrol import service
from siaga112.callcontrol.deps import Control
from siaga112.callcontrol.schemas import CallActionOut, TransferRequest
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/calls", tags=["calls"], responses=ERROR_RESPONSES)


@router.post("/{call_id}/hangup", response_model=CallActionOut, summary="Hang up a live call")
async def hangup(
    call_id: uuid.UUID,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
) -> CallActionOut:
    await service.hangup(
        session=session, call_id=call_id, control=control, actor=actor, request_id=rid
    )
    await session.commit()
    return CallActionOut(call_id=call_id, action="hangup")


@router.post(
    "/{call_id}/transfer",
    response_model=CallActionOut,
    summary="Blind-transfer the caller to an agency's number (back to the queue if unanswered)",
)
async def transfer(
    call_id: uuid.UUID,
    data: TransferRequest,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
) -> CallActionOut:
    _, number = await service.transfer(
        session=session,
        call_id=call_id,
        agency_id=data.agency_id,
        control=control,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    return CallActionOut(call_id=call_id, action="transfer", number=number)
