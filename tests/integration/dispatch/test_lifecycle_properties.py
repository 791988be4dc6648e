"""Properties of the dispatch lifecycle through the service and the database: whatever
sequence of status updates arrives (agencies retry, race, send nonsense), a dispatch only ever
moves forward along sent -> acknowledged -> en_route -> on_scene -> completed or to declined,
each accepted change is recorded once (timeline, audit, timestamp), and every other request is
refused as an invalid transition without leaving a trace."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.service import system_actor
from siaga112.dispatch import service
from siaga112.dispatch.lifecycle import FINAL, PATH, DispatchStatus, can_transition
from siaga112.dispatch.models import Dispatch
from siaga112.errors import InvalidTransition
from siaga112.incidents.lifecycle import Channel
from siaga112.incidents.models import IncidentEvent
from siaga112.incidents.schemas import IncidentCreate
from siaga112.incidents.service import create_incident

ACTOR = system_actor("tests")
TIMESTAMP = {
    DispatchStatus.ACKNOWLEDGED: "acknowledged_at",
    DispatchStatus.EN_ROUTE: "en_route_at",
    DispatchStatus.ON_SCENE: "on_scene_at",
    DispatchStatus.COMPLETED: "completed_at",
    DispatchStatus.DECLINED: "declined_at",
}


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(updates=st.lists(st.sampled_from(list(DispatchStatus)), max_size=12))
async def test_any_update_sequence_keeps_the_lifecycle(
    sessionmaker: async_sessionmaker[AsyncSession], updates: list[DispatchStatus]
) -> None:
    async with sessionmaker() as session:
        incident = await create_incident(
            session=session,
            data=IncidentCreate(channel=Channel.RADIO, category=None),
            actor=ACTOR,
            request_id=None,
        )
        batch = await service.create_dispatches(
            session=session,
            incident_id=incident.id,
            agencies=["damkar"],
            note=None,
            actor=ACTOR,
            request_id=None,
        )
        dispatch_id = batch.created[0].dispatch.id
        await session.commit()

    expected = DispatchStatus.SENT
    reached = [DispatchStatus.SENT]
    for target in updates:
        async with sessionmaker() as session:
            try:
                view = await service.update_dispatch_status(
                    session=session,
                    dispatch_id=dispatch_id,
                    target=target,
                    reason="Di luar wilayah",
                    remark=None,
                    actor=ACTOR,
                    request_id=None,
                )
            except InvalidTransition:
                await session.rollback()
                assert target is not expected
                assert not can_transition(expected, target)
                continue
            await session.commit()
        assert target is expected or can_transition(expected, target)
        if target is not expected:
            expected = target
            reached.append(target)
        assert view.dispatch.status == expected.value

    # Forward only: the statuses reached follow the path, or branch off once to declined.
    main = [s for s in reached if s is not DispatchStatus.DECLINED]
    assert main == list(PATH[: len(main)])
    if DispatchStatus.DECLINED in reached:
        assert reached[-1] is DispatchStatus.DECLINED
        assert len(main) <= 2
    if expected in FINAL:
        assert all(not can_transition(expected, s) for s in DispatchStatus)

    async with sessionmaker() as session:
        dispatch = await session.get_one(Dispatch, dispatch_id, populate_existing=True)
        for status, column in TIMESTAMP.items():
            assert (getattr(dispatch, column) is not None) == (status in reached)
        changes = await session.scalar(
            select(func.count())
            .select_from(IncidentEvent)
            .where(
                IncidentEvent.incident_id == incident.id,
                IncidentEvent.kind == "dispatch_status_changed",
            )
        )
        audits = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "dispatch.update", AuditEvent.entity_id == str(dispatch_id))
        )
    assert changes == audits == len(reached) - 1


@pytest.mark.parametrize("status", list(DispatchStatus))
def test_final_statuses_have_no_way_out_and_others_have_one(status: DispatchStatus) -> None:
    outs = [s for s in DispatchStatus if can_transition(status, s)]
    assert (outs == []) == (status in FINAL)
    assert status not in outs
