from __future__ import annotations

from fastapi import APIRouter, Path, status

from siaga112.agencies import service
from siaga112.agencies.schemas import AgencyCreate, AgencyOut, AgencyUpdate
from siaga112.api.deps import AgencyManager, Reader, RequestId, SessionDep
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/agencies", tags=["agencies"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[AgencyOut], summary="List agencies")
async def list_agencies(
    session: SessionDep, _: Reader, active: bool | None = None
) -> list[AgencyOut]:
    rows = await service.list_agencies(session=session, active=active)
    return [AgencyOut.model_validate(r) for r in rows]


@router.get("/{agency_id}", response_model=AgencyOut, summary="Get one agency")
async def get_agency(
    session: SessionDep, _: Reader, agency_id: int = Path(ge=1, le=2**31 - 1)
) -> AgencyOut:
    return AgencyOut.model_validate(await service.get_agency(session=session, agency_id=agency_id))


@router.post(
    "",
    response_model=AgencyOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create an agency",
    responses={409: ERROR_RESPONSES[422]},
)
async def create_agency(
    data: AgencyCreate, session: SessionDep, actor: AgencyManager, rid: RequestId
) -> AgencyOut:
    agency = await service.create_agency(session=session, data=data, actor=actor, request_id=rid)
    await session.commit()
    return AgencyOut.model_validate(agency)


@router.patch("/{agency_id}", response_model=AgencyOut, summary="Update an agency")
async def update_agency(
    data: AgencyUpdate,
    session: SessionDep,
    actor: AgencyManager,
    rid: RequestId,
    agency_id: int = Path(ge=1, le=2**31 - 1),
) -> AgencyOut:
    agency = await service.update_agency(
        session=session, agency_id=agency_id, data=data, actor=actor, request_id=rid
    )
    await session.commit()
    await session.refresh(agency)
    return AgencyOut.model_validate(agency)
