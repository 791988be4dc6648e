"""The AGI step and the call tracker's progress batches on an engine (as in production, not the
tests' shared transaction): each is one statement on a pooled connection in autocommit, with
no ORM session and no BEGIN/COMMIT, and what it writes is committed at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import delete, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.calls.models import Call
from siaga112.calls.recorder import CallProgress
from siaga112.config import AmiSettings, Settings
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.metrics import Metrics
from siaga112.runtime.telephony import Telephony
from tests.factories import call_facts


async def test_agi_step_and_progress_are_single_statements_committed_at_once(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    conf = settings.model_copy(
        update={"ami": AmiSettings(secret=SecretStr("test")), "state_dir": tmp_path}
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    tel = Telephony(settings=conf, sessionmaker=sessions, metrics=Metrics(), role="events")
    uid = f"one-{uuid.uuid4().hex[:12]}"
    sent: list[str] = []

    def count(*args: object) -> None:
        sent.append(str(args[2]).strip().split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        at = datetime.now(UTC)
        recorded = await tel._record_call(call_facts(uid), at)
        answered = at + timedelta(seconds=2)
        missing = await tel._write_progress(
            [
                CallProgress(
                    uniqueid=uid, state="answered", enqueued_at=at, ringing_at=at,
                    answered_at=answered, ended_at=None, queue="emergency", operator="6001",
                    hangup_cause=None, outcome="answered",
                ),
                CallProgress(
                    uniqueid="no-such.3", state="queued", enqueued_at=at, ringing_at=None,
                    answered_at=None, ended_at=None, queue="emergency", operator=None,
                    hangup_cause=None, outcome=None,
                ),
            ]
        )  # fmt: skip
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    try:
        assert missing == {"no-such.3"}
        # Two statements in all: the AGI step's, and the whole batch's (progress and line).
        assert sent == ["WITH", "WITH"]
        # Committed: another connection sees the call, its state and its timeline line.
        async with sessions() as other:
            call = await other.get(Call, recorded.call_id)
            assert call is not None
            assert (call.state, call.operator, call.answered_at) == ("answered", "6001", answered)
            kinds = (
                await other.scalars(
                    select(IncidentEvent.kind)
                    .where(IncidentEvent.incident_id == recorded.incident_id)
                    .order_by(IncidentEvent.id)
                )
            ).all()
            assert kinds == ["created", "call_offered", "call_answered"]
    finally:
        async with sessions() as cleanup:
            await cleanup.execute(delete(Call).where(Call.uniqueid == uid))
            await cleanup.execute(delete(Incident).where(Incident.id == recorded.incident_id))
            await cleanup.commit()
