"""Call progress against a call whose locations are being stored at the same moment (two real
connections): the progress write must not wait for the location transaction.

Storing a location takes a KEY SHARE lock on its call (the foreign key); progress locked the
call FOR UPDATE, which waits for KEY SHARE. The location transaction then marks the call done
(an UPDATE of the same row) and waits behind the queued progress write: PostgreSQL's deadlock
(seen by bench/drill after a worker restart, reconciliation beside the location worker).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.calls.models import Call
from siaga112.calls.recorder import CallProgress, apply_progress
from siaga112.incidents.models import Incident
from siaga112.locations.models import Location


async def test_progress_does_not_wait_for_a_location_being_stored(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    uid = f"{datetime.now(UTC).timestamp():.0f}.{uuid.uuid4().int % 10**6}"
    async with sessions() as setup:
        incident = Incident(
            status="new", channel="call", priority=3, origin_linkedid=uid, created_by="tests"
        )
        setup.add(incident)
        await setup.flush()
        call = Call(
            uniqueid=uid, linkedid=uid, state="offered", source="agi", incident_id=incident.id,
            caller_id_available=False, offered_at=datetime.now(UTC),
        )  # fmt: skip
        setup.add(call)
        await setup.commit()
    locating: AsyncSession = sessions()
    progress: AsyncSession = sessions()
    try:
        # The location worker's transaction, still open: a location stored for the call.
        locating.add(
            Location(
                call_id=call.id, incident_id=incident.id, source="cell",
                observed_at=datetime.now(UTC),
            )
        )  # fmt: skip
        await locating.flush()
        await progress.execute(text("SET LOCAL lock_timeout = '2s'"))
        missing = await apply_progress(
            session=progress,
            updates=[
                CallProgress(
                    uniqueid=uid, state="queued", enqueued_at=datetime.now(UTC),
                    ringing_at=None, answered_at=None, ended_at=None, queue="emergency",
                    operator=None, hangup_cause=None, outcome=None,
                )
            ],
        )  # fmt: skip
        assert missing == set()
        await progress.commit()
        await locating.commit()
    finally:
        await progress.close()
        await locating.close()
        async with sessions() as cleanup:
            await cleanup.execute(delete(Call).where(Call.id == call.id))
            await cleanup.execute(delete(Incident).where(Incident.id == incident.id))
            await cleanup.commit()
