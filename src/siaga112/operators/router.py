"""/v1/operators: SIP accounts (supervisor/admin) and queue sessions (operators and up)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from siaga112.api.deps import IncidentWriter, Reader, RequestId, SessionDep, require
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor
from siaga112.callcontrol.deps import Control
from siaga112.callcontrol.protocol import CallControl, QueueMemberState
from siaga112.config import Settings
from siaga112.operators import service
from siaga112.operators.models import Operator
from siaga112.operators.schemas import (
    OperatorCreate,
    OperatorCreated,
    OperatorOut,
    OperatorUpdate,
    PauseRequest,
    SipAccount,
)
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/operators", tags=["operators"], responses=ERROR_RESPONSES)

OperatorManager = Annotated[Actor, Depends(require(Permission.MANAGE_OPERATORS))]
Extension = Annotated[str, Path(pattern=r"^[0-9]{1,8}$")]


async def _target(request: Request) -> service.QueueTarget:
    settings: Settings = request.app.state.settings
    return service.QueueTarget.for_settings(settings.pbx)


Target = Annotated[service.QueueTarget, Depends(_target)]


def _out(op: Operator, states: dict[str, QueueMemberState] | None) -> OperatorOut:
    out = OperatorOut.model_validate(op)
    if states is not None:
        member = states.get(op.extension)
        out.state = member.state if member is not None else "logged_out"
    return out


@router.get("", response_model=list[OperatorOut], summary="Operators with their live state")
async def list_operators(
    session: SessionDep, _: Reader, control: Control, target: Target
) -> list[OperatorOut]:
    rows = await service.list_operators(session=session)
    states = await service.live_states(control=control, target=target)
    return [_out(op, states) for op in rows]


@router.get("/{extension}", response_model=OperatorOut, summary="One operator, live state")
async def get_operator(
    session: SessionDep, _: Reader, control: Control, target: Target, extension: Extension
) -> OperatorOut:
    op = await service.get_operator(session=session, extension=extension)
    return _out(op, await service.live_states(control=control, target=target))


@router.post(
    "",
    response_model=OperatorCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an operator with a SIP account (password shown once)",
)
async def create_operator(
    data: OperatorCreate,
    request: Request,
    session: SessionDep,
    actor: OperatorManager,
    rid: RequestId,
    control: Control,
    target: Target,
) -> OperatorCreated:
    op, password = await service.create_operator(
        session=session,
        extension=data.extension,
        name=data.name,
        target=target,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    await service.apply_accounts(control=control)
    await session.refresh(op)
    settings: Settings = request.app.state.settings
    sip = SipAccount(
        username=op.extension,
        password=password,
        registrar=f"{settings.pbx.sip_bind}:{settings.pbx.sip_port}",
    )
    return OperatorCreated(**OperatorOut.model_validate(op).model_dump(), sip=sip)


@router.patch("/{extension}", response_model=OperatorOut, summary="Rename, disable or enable")
async def update_operator(
    data: OperatorUpdate,
    session: SessionDep,
    actor: OperatorManager,
    rid: RequestId,
    control: Control,
    target: Target,
    extension: Extension,
) -> OperatorOut:
    op = await service.update_operator(
        session=session,
        extension=extension,
        name=data.name,
        enabled=data.enabled,
        control=control,
        target=target,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    if data.enabled is not None:
        await service.apply_accounts(control=control)
    await session.refresh(op)
    return OperatorOut.model_validate(op)


@router.delete(
    "/{extension}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an operator and its SIP account",
)
async def delete_operator(
    session: SessionDep,
    actor: OperatorManager,
    rid: RequestId,
    control: Control,
    target: Target,
    extension: Extension,
) -> Response:
    await service.delete_operator(
        session=session,
        extension=extension,
        control=control,
        target=target,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    await service.apply_accounts(control=control)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _session_change(
    session: SessionDep,
    actor: Actor,
    rid: str | None,
    control: CallControl | None,
    target: service.QueueTarget,
    extension: str,
    *,
    logged_in: bool | None = None,
    pause_reason: str | None = None,
    resume: bool = False,
) -> OperatorOut:
    op = await service.set_session(
        session=session,
        extension=extension,
        control=control,
        target=target,
        actor=actor,
        request_id=rid,
        logged_in=logged_in,
        pause_reason=pause_reason,
        resume=resume,
    )
    await session.commit()
    await session.refresh(op)
    return _out(op, await service.live_states(control=control, target=target))


@router.post("/{extension}/login", response_model=OperatorOut, summary="Join the queue")
async def login(
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
    target: Target,
    extension: Extension,
) -> OperatorOut:
    return await _session_change(session, actor, rid, control, target, extension, logged_in=True)


@router.post("/{extension}/logout", response_model=OperatorOut, summary="Leave the queue")
async def logout(
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
    target: Target,
    extension: Extension,
) -> OperatorOut:
    return await _session_change(session, actor, rid, control, target, extension, logged_in=False)


@router.post("/{extension}/pause", response_model=OperatorOut, summary="Pause with a reason")
async def pause(
    data: PauseRequest,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
    target: Target,
    extension: Extension,
) -> OperatorOut:
    return await _session_change(
        session, actor, rid, control, target, extension, pause_reason=data.reason
    )


@router.post("/{extension}/resume", response_model=OperatorOut, summary="End a pause")
async def resume(
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
    control: Control,
    target: Target,
    extension: Extension,
) -> OperatorOut:
    return await _session_change(session, actor, rid, control, target, extension, resume=True)
