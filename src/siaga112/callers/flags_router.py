from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from siaga112.api.deps import IncidentWriter, Reader, RequestId, SessionDep, require
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor
from siaga112.callers import flags as service
from siaga112.callers.flag_models import NumberFlag
from siaga112.callers.flag_schemas import FlagCreate, FlagKind, FlagOut
from siaga112.schemas import ERROR_RESPONSES, ErrorOut

router = APIRouter(prefix="/number-flags", tags=["number flags"], responses=ERROR_RESPONSES)

FlagRevoker = Annotated[Actor, Depends(require(Permission.REVOKE_FLAGS))]
FlagId = Annotated[int, Path(ge=1, le=2**62)]
_404: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "no such flag"}}


@router.get("", response_model=list[FlagOut], summary="Flagged numbers (default: active ones)")
async def list_flags(
    session: SessionDep,
    _: Reader,
    active: bool | None = True,
    number: Annotated[str | None, Query(max_length=32, pattern=r"^\+?[0-9]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[FlagOut]:
    flags = await service.list_flags(session=session, active=active, number=number, limit=limit)
    return [_with_active(f) for f in flags]


@router.post(
    "",
    response_model=FlagOut,
    status_code=status.HTTP_201_CREATED,
    summary="Flag a prank or nuisance number",
    description=(
        "The number's next calls still reach an operator: they go to the low-priority queue "
        "after a short announcement. Only a full subscriber number can be flagged, never "
        "anonymous or SIM-less callers."
    ),
)
async def create_flag(
    data: FlagCreate, session: SessionDep, actor: IncidentWriter, rid: RequestId
) -> FlagOut:
    flag = await service.create_flag(session=session, data=data, actor=actor, request_id=rid)
    await session.commit()
    return _with_active(flag)


@router.get(
    "/{flag_id}",
    response_model=FlagOut,
    responses=_404,
    summary="One flag with the number's call history as evidence",
    description=(
        "The number's calls and how their incidents were classified, in every form the number "
        "was stored in (+62..., 62..., 0...). Every read is audited (`caller.history.read`)."
    ),
)
async def get_flag(flag_id: FlagId, session: SessionDep, actor: Reader, rid: RequestId) -> FlagOut:
    flag = await service.get_flag(session=session, flag_id=flag_id)
    out = _with_active(flag)
    out.evidence = await service.evidence(session=session, flag=flag, actor=actor, request_id=rid)
    await session.commit()
    return out


@router.delete(
    "/{flag_id}", response_model=FlagOut, responses=_404, summary="Lift a flag before it expires"
)
async def revoke_flag(
    flag_id: FlagId, session: SessionDep, actor: FlagRevoker, rid: RequestId
) -> FlagOut:
    flag = await service.revoke_flag(session=session, flag_id=flag_id, actor=actor, request_id=rid)
    await session.commit()
    return _with_active(flag)


def _with_active(flag: NumberFlag) -> FlagOut:
    return FlagOut(
        id=flag.id,
        number=flag.number,
        kind=FlagKind(flag.kind),
        reason=flag.reason,
        expires_at=flag.expires_at,
        active=service.is_active(flag),
        created_by=flag.created_by,
        created_at=flag.created_at,
        revoked_at=flag.revoked_at,
        revoked_by=flag.revoked_by,
    )
