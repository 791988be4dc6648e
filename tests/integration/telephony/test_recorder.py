"""Calls and their incidents from the telephony side, against the real database: one incident
per call however often a request is replayed, progress that only moves forward."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.calls.models import Call
from siaga112.calls.recorder import CallFacts, CallProgress, apply_progress, record_incoming
from siaga112.incidents.models import Incident, IncidentEvent

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def facts(uniqueid: str | None = None, **changes: object) -> CallFacts:
    uid = uniqueid or f"1763884800.{uuid.uuid4().int % 100000}"
    base = CallFacts(
        uniqueid=uid,
        linkedid=uid,
        channel="PJSIP/carrier-00000001",
        caller_number="081234567890",
        caller_name="",
        caller_e164="+6281234567890",
        asserted_number="+6281234567890",
        presentation="allowed_not_screened",
        caller_id_available=True,
        callback_number="+6281234567890",
        dialled_number="112",
        pai="<sip:+6281234567890@carrier>",
        pani="3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E",
        geolocation=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def progress(uniqueid: str, **changes: object) -> CallProgress:
    base = CallProgress(
        uniqueid=uniqueid,
        state="queued",
        enqueued_at=None,
        ringing_at=None,
        answered_at=None,
        ended_at=None,
        queue=None,
        operator=None,
        hangup_cause=None,
        outcome=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_call_opens_one_incident_with_timeline_and_audit(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    f = facts()
    async with sessionmaker() as session:
        rec = await record_incoming(session=session, facts=f, at=T0)
        await session.commit()
        assert rec.call_created
        call = (await session.scalars(select(Call).where(Call.uniqueid == f.uniqueid))).one()
        incident = await session.get(Incident, rec.incident_id)
        assert incident is not None
        assert incident.channel == "call"
        assert incident.caller_number == "+6281234567890"
        assert incident.origin_linkedid == f.linkedid
        assert call.incident_id == rec.incident_id
        assert call.pani_raw == f.pani
        assert call.source == "agi"
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == rec.incident_id)
            )
        ).all()
        assert kinds == ["created", "call_offered"]
        audit = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.entity_id == str(rec.incident_id),
                    AuditEvent.action == "incident.create",
                )
            )
        ).one()
        assert audit.actor == "system:agi"


async def test_replayed_request_makes_no_second_row(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    f = facts()
    async with sessionmaker() as session:
        first = await record_incoming(session=session, facts=f, at=T0)
        again = await record_incoming(session=session, facts=f, at=T0 + timedelta(seconds=1))
        await session.commit()
        assert (again.call_id, again.incident_id) == (first.call_id, first.incident_id)
        assert not again.call_created
        calls = await session.scalar(
            select(func.count()).select_from(Call).where(Call.uniqueid == f.uniqueid)
        )
        incidents = await session.scalar(
            select(func.count()).select_from(Incident).where(Incident.origin_linkedid == f.linkedid)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(IncidentEvent)
            .where(IncidentEvent.incident_id == first.incident_id)
        )
        assert (calls, incidents, events) == (1, 1, 2)  # created, call_offered


async def test_anonymous_caller_still_gets_call_and_incident(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    f = facts(
        caller_number=None,
        caller_e164=None,
        asserted_number=None,
        callback_number=None,
        caller_id_available=False,
        presentation="prohib",
        pai=None,
    )
    async with sessionmaker() as session:
        rec = await record_incoming(session=session, facts=f, at=T0)
        await session.commit()
        call = await session.get(Call, rec.call_id)
        assert call is not None
        assert call.caller_id_available is False
        assert call.caller_number is None
        assert (await session.get(Incident, rec.incident_id)) is not None


async def test_progress_moves_forward_only(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    f = facts()
    async with sessionmaker() as session:
        await record_incoming(session=session, facts=f, at=T0)
        answered = T0 + timedelta(seconds=8)
        await apply_progress(
            session=session,
            updates=[
                progress(
                    f.uniqueid,
                    state="answered",
                    enqueued_at=T0 + timedelta(seconds=1),
                    answered_at=answered,
                    operator="6001",
                    queue="emergency",
                    outcome="answered",
                )
            ],
        )
        # A late, stale "queued" and a second answer by someone else change nothing.
        await apply_progress(
            session=session,
            updates=[
                progress(f.uniqueid, state="queued", enqueued_at=T0 + timedelta(seconds=3)),
                progress(
                    f.uniqueid,
                    state="answered",
                    answered_at=answered + timedelta(seconds=5),
                    operator="6002",
                ),
            ],
        )
        ended = T0 + timedelta(seconds=60)
        await apply_progress(
            session=session,
            updates=[
                progress(f.uniqueid, state="ended", ended_at=ended, hangup_cause="Normal Clearing")
            ],
        )
        await apply_progress(session=session, updates=[progress(f.uniqueid, state="ringing")])
        await session.commit()
        call = (await session.scalars(select(Call).where(Call.uniqueid == f.uniqueid))).one()
        await session.refresh(call)
        assert call.state == "ended"
        assert call.operator == "6001"
        assert call.answered_at == answered
        assert call.enqueued_at == T0 + timedelta(seconds=1)
        assert call.ended_at == ended
        assert call.outcome == "answered"
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind)
                .where(IncidentEvent.incident_id == call.incident_id)
                .order_by(IncidentEvent.id)
            )
        ).all()
        # Each milestone once, however often progress was replayed.
        assert kinds == ["created", "call_offered", "call_answered", "call_ended"]


async def test_progress_for_unknown_call_is_reported_missing(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    async with sessionmaker() as session:
        missing = await apply_progress(session=session, updates=[progress("no-such.1")])
    assert missing == {"no-such.1"}


async def test_first_overflow_ring_is_kept_and_lands_once_on_the_timeline(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    f = facts()
    first = T0 + timedelta(seconds=33)
    async with sessionmaker() as session:
        await record_incoming(session=session, facts=f, at=T0)
        await apply_progress(
            session=session, updates=[progress(f.uniqueid, state="ringing", overflowed_at=first)]
        )
        # Replays, a later overflow ring and progress without it keep the first time.
        await apply_progress(
            session=session,
            updates=[
                progress(f.uniqueid, state="ringing", overflowed_at=first),
                progress(f.uniqueid, state="ringing", overflowed_at=first + timedelta(seconds=16)),
                progress(
                    f.uniqueid,
                    state="answered",
                    answered_at=first + timedelta(seconds=3),
                    operator="overflow:+62215550112",
                ),
            ],
        )
        await session.commit()
        call = (await session.scalars(select(Call).where(Call.uniqueid == f.uniqueid))).one()
        await session.refresh(call)
        events = (
            await session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == call.incident_id)
                .order_by(IncidentEvent.id)
            )
        ).all()
    assert call.overflowed_at == first
    assert call.operator == "overflow:+62215550112"
    assert [e.kind for e in events] == [
        "created",
        "call_offered",
        "call_overflowed",
        "call_answered",
    ]
    assert events[2].at == first
    assert events[2].data == {"uniqueid": f.uniqueid}


async def test_a_call_operators_handled_has_no_overflow(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    f = facts()
    async with sessionmaker() as session:
        await record_incoming(session=session, facts=f, at=T0)
        await apply_progress(
            session=session,
            updates=[progress(f.uniqueid, state="answered", answered_at=T0, operator="6001")],
        )
        await session.commit()
        call = (await session.scalars(select(Call).where(Call.uniqueid == f.uniqueid))).one()
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == call.incident_id)
            )
        ).all()
    assert call.overflowed_at is None
    assert "call_overflowed" not in kinds


async def test_a_call_keeps_the_node_that_took_it(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    uid = f"pbx-b-1763884800.{uuid.uuid4().int % 100000}"
    async with sessionmaker() as session:
        first = await record_incoming(session=session, facts=facts(uid, node="pbx-b"), at=T0)
        # A replay that does not know the node (an AMI-first row, say) leaves it as it was.
        again = await record_incoming(session=session, facts=facts(uid), at=T0, source="ami")
        assert again.call_id == first.call_id
        call = await session.get(Call, first.call_id)
        assert call is not None
        await session.refresh(call)
        assert (call.uniqueid, call.linkedid, call.node) == (uid, uid, "pbx-b")
    async with sessionmaker() as session:
        other = await record_incoming(session=session, facts=facts(None), at=T0)
        row = await session.get(Call, other.call_id)
        assert row is not None
        assert row.node is None


async def test_a_batch_of_calls_is_one_statement_with_each_calls_lines(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    connection: AsyncConnection,
) -> None:
    """The tracker's flush (several calls, each once) is written by one statement: the calls'
    progress and their timeline lines, as the call-by-call path wrote them; a call without a
    row is reported missing, the others are written."""
    calls = [facts() for _ in range(4)]
    async with sessionmaker() as session:
        for f in calls:
            await record_incoming(session=session, facts=f, at=T0)
        answered, ended = T0 + timedelta(seconds=5), T0 + timedelta(seconds=40)
        overflow = T0 + timedelta(seconds=3)
        updates = [
            progress(calls[0].uniqueid, state="answered", answered_at=answered, operator="6001"),
            progress(calls[1].uniqueid, state="ringing", overflowed_at=overflow),
            progress(calls[2].uniqueid, state="abandoned", ended_at=ended, outcome="abandoned"),
            progress("no-such.2"),
            progress(calls[3].uniqueid, state="queued", enqueued_at=T0, queue="emergency"),
        ]
        statements: list[str] = []

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(connection.sync_connection, "before_cursor_execute", count)
        try:
            missing = await apply_progress(session=session, updates=updates)
        finally:
            event.remove(connection.sync_connection, "before_cursor_execute", count)
        assert missing == {"no-such.2"}
        assert len([s for s in statements if "UPDATE calls" in s]) == 1
        assert len(statements) == 1
        await session.commit()
        rows = {
            c.uniqueid: c
            for c in (
                await session.scalars(
                    select(Call).where(Call.uniqueid.in_([f.uniqueid for f in calls]))
                )
            ).all()
        }
        for c in rows.values():
            await session.refresh(c)
        first, second, third, fourth = (rows[f.uniqueid] for f in calls)
        assert (first.state, first.operator, first.answered_at) == ("answered", "6001", answered)
        assert (second.state, second.overflowed_at) == ("ringing", overflow)
        assert (third.state, third.outcome, third.ended_at) == ("abandoned", "abandoned", ended)
        assert (fourth.state, fourth.queue, fourth.enqueued_at) == ("queued", "emergency", T0)
        lines = (
            await session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id.in_([c.incident_id for c in rows.values()]))
                .where(IncidentEvent.kind.not_in(("created", "call_offered")))
                .order_by(IncidentEvent.id)
            )
        ).all()
        assert [(e.incident_id, e.kind, e.at, e.actor, e.data) for e in lines] == [
            (first.incident_id, "call_answered", answered, "system:ami",
             {"uniqueid": first.uniqueid, "operator": "6001"}),
            (second.incident_id, "call_overflowed", overflow, "system:ami",
             {"uniqueid": second.uniqueid}),
            (third.incident_id, "call_abandoned", ended, "system:ami",
             {"uniqueid": third.uniqueid, "operator": None}),
        ]  # fmt: skip
