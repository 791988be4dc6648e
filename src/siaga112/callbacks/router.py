"""/v1/callbacks: the worklist of abandoned and silent calls, and calling them back."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status

from siaga112.api.deps import IncidentWriter, Reader, RequestId, SessionDep
from siaga112.callbacks import service
from siaga112.callbacks.schemas import (
    AttemptOut,
    AttemptStarted,
    CallbackDetail,
    CallbackOut,
    CallbackPage,
    CallbackRequest,
    CallbackStatus,
    DismissRequest,
)
from siaga112.callcontrol.deps import Control
from siaga112.config import Settings
from siaga112.schemas import ERROR_RESPONSES, ErrorOut, Timestamp

router = APIRouter(prefix="/callbacks", tags=["callbacks"], responses=ERROR_RESPONSES)


async def _policy(request: Request) -> service.CallbackPolicy:
    settings: Settings = request.app.state.settings
    return service.CallbackPolicy.from_settings(settings)


Policy = Annotated[service.CallbackPolicy, Depends(_policy)]

_409: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorOut,
        "description": "`callback_in_progress`: someone is calling this number back now, or "
        "the operator already has a callback under way; `invalid_transition`: already reached "
        "or not needed (send `force`), or the operator is disabled",
    },
    422: {
        "model": ErrorOut,
        "description": "`caller_id_unavailable`: the call came without a number",
    },
    503: {
        "model": ErrorOut,
        "description": "`telephony_unavailable`: no AMI here, or Asterisk refused",
    },
}


def _out(item: service.WorklistItem) -> CallbackOut:
    return CallbackOut.model_validate(asdict(item))


@router.get(
    "",
    response_model=CallbackPage,
    summary="Abandoned and silent calls to call back, newest first",
    description="Calls abandoned in the queue and calls classified ghost (silent) that came "
    "with a number. `status`: pending, in_progress (an operator is calling back), reached, "
    "no_answer, busy, failed, not_needed (set by an operator, or found by itself: the same "
    "number got through later). Callers without a number are counted in `anonymous`.",
)
async def list_callbacks(
    session: SessionDep,
    _: Reader,
    status_: Annotated[list[CallbackStatus] | None, Query(alias="status")] = None,
    reason: Annotated[list[Literal["abandoned", "silent"]] | None, Query()] = None,
    offered_from: Annotated[Timestamp | None, Query()] = None,
    offered_to: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CallbackPage:
    page = await service.list_callbacks(
        session=session,
        status=list(status_) if status_ else None,
        reason=list(reason) if reason else None,
        offered_from=offered_from,
        offered_to=offered_to,
        limit=limit,
        cursor=cursor,
    )
    return CallbackPage(
        items=[_out(i) for i in page.items], next_cursor=page.next_cursor, anonymous=page.anonymous
    )


@router.get(
    "/{call_id}",
    response_model=CallbackDetail,
    summary="One worklist item with its attempts",
    responses={404: {"model": ErrorOut, "description": "not an abandoned or silent call"}},
)
async def get_callback(call_id: uuid.UUID, session: SessionDep, _: Reader) -> CallbackDetail:
    item, attempts = await service.get_callback(session=session, call_id=call_id)
    return CallbackDetail(
        **_out(item).model_dump(),
        attempt_list=[AttemptOut.model_validate(a) for a in attempts],
    )


@router.post(
    "/{call_id}/call",
    response_model=AttemptStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_409,
    summary="Call the caller back from an operator's phone",
    description="Claims the call (409 if someone is calling this number back) and sends AMI "
    "Originate: the operator's extension rings first; once it answers, the caller is dialled "
    "through the carrier trunk. The outcome (reached, no_answer, busy, failed, or "
    "operator_unavailable when the operator's phone did not answer) arrives on the timeline "
    "(`callback_result`, also on the live event stream) and in `GET /v1/callbacks/{call_id}`.",
)
async def call_back(
    call_id: uuid.UUID,
    data: CallbackRequest,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
    policy: Policy,
) -> AttemptStarted:
    attempt = await service.call_back(
        session=session,
        call_id=call_id,
        operator_extension=data.operator_extension,
        force=data.force,
        control=control,
        policy=policy,
        actor=actor,
        request_id=rid,
    )
    return AttemptStarted(
        call_id=attempt.call_id,
        attempt_id=attempt.attempt_id,
        operator_extension=attempt.operator_extension,
        number=attempt.number,
        dialled=attempt.dialled,
        expires_at=attempt.expires_at,
    )


@router.post(
    "/{call_id}/dismiss",
    response_model=CallbackOut,
    responses=_409,
    summary="Close as not needed, with a note",
)
async def dismiss(
    call_id: uuid.UUID,
    data: DismissRequest,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> CallbackOut:
    item = await service.dismiss(
        session=session, call_id=call_id, note=data.note, actor=actor, request_id=rid
    )
    await session.commit()
    return _out(item)
