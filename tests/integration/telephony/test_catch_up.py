"""Calls cut during a gap (a follower taking a node's lease, the database away and back) are
reconciled from the node's CDR file as soon as their lines are written, not at the next
periodic pass (30 s): the follower reads the file every second for a while after the gap."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.runtime.telephony import RECONCILE_EVERY_S, Telephony
from tests.integration.telephony.test_node_lost import _follower, _nodes
from tests.integration.telephony.test_reconcile import cdr_line

Sessions = async_sessionmaker[AsyncSession]


async def _no_link() -> None:
    """The AMI session is not what these tests are about: never connected."""


@pytest.fixture
def committed(engine: AsyncEngine) -> Sessions:
    """Sessions of their own (the follower's passes run beside the test's reads)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def follower(
    settings: Settings, committed: Sessions, tmp_path: Path
) -> AsyncIterator[Telephony]:
    """Node a's follower as a worker runs it after taking the node's lease (`start()`), its
    CDR file in the test's own directory."""
    conf = _nodes(settings, tmp_path)
    nodes = [n.model_copy(update={"cdr_path": tmp_path / f"{n.name}.csv"}) for n in conf.pbx.nodes]
    conf = conf.model_copy(update={"pbx": conf.pbx.model_copy(update={"nodes": nodes})})
    followed = _follower(conf, committed, "nodea")
    assert followed.reconciler.path.is_relative_to(tmp_path)
    for link in followed.links.values():
        link.start = _no_link  # type: ignore[method-assign]
    followed.reconciler.path.touch()
    # The test database's record starts when it was made, moments ago: not a floor here.
    followed.reconciler.not_before = datetime(2000, 1, 1, tzinfo=UTC)
    await followed.start()
    try:
        yield followed
    finally:
        await followed.stop()


def _append_cut_call(follower: Telephony) -> str:
    """The CDR line of a call no siaga112 process saw (its AGI step cut during the gap), as
    Asterisk appends it when the call ends: answered by an operator and without a network
    cell (so that these committed rows are on no other test's callback worklist or location
    sweep)."""
    uid = f"nodea-{time.time():.0f}.{uuid.uuid4().int % 10**6}"
    now = time.time()
    with follower.reconciler.path.open("a") as fh:
        fh.write(
            cdr_line(
                uid,
                start=f"{now - 4:.6f}",
                answer=f"{now - 4:.6f}",
                end=f"{now:.6f}",
                siaga112_enqueued=f"{now - 3:.6f}",
                siaga112_answered=f"{now - 2:.6f}",
                # Nothing for the location sweep: these rows are committed, other tests sweep.
                siaga112_pani="",
            )
        )
    return uid


async def _row_within(
    sessionmaker: Sessions, uid: str, within_s: float
) -> tuple[float | None, Any]:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        async with sessionmaker() as session:
            call = await session.scalar(select(Call).where(Call.uniqueid == uid))
        if call is not None:
            return time.monotonic() - started, call
        await asyncio.sleep(0.1)
    return None, None


async def test_a_call_ending_after_a_takeover_is_reconciled_within_seconds(
    follower: Telephony, committed: Sessions
) -> None:
    # The takeover's own pass has run; the call cut while nobody followed the node ends now.
    await asyncio.sleep(0.5)
    uid = _append_cut_call(follower)
    took, call = await _row_within(committed, uid, 5)
    assert took is not None, f"not reconciled within 5 s (periodic pass every {RECONCILE_EVERY_S})"
    assert (call.source, call.node, call.state) == ("reconciled", "nodea", "ended")
    assert call.incident_id is not None
    assert follower.metrics.counters["reconcile_catch_ups"] >= 1


async def test_a_call_ending_after_the_database_came_back_is_reconciled_within_seconds(
    follower: Telephony, committed: Sessions
) -> None:
    # Long after the takeover: the follower reads the file at the periodic pace again.
    follower._catch_up_until = 0.0

    class Away:
        """The database away (primary down, replica not yet promoted)."""

        def __call__(self) -> Any:
            raise OperationalError("connect", {}, ConnectionRefusedError("away"))

    real: Callable[[], AsyncSession] = follower.sessionmaker
    follower.sessionmaker = Away()  # type: ignore[assignment]
    with pytest.raises(OperationalError):
        await follower._write_progress([])
    follower.sessionmaker = real  # type: ignore[assignment]
    # Back: the tracker's next write goes through (it retries every 0.5 s).
    await follower._write_progress([])
    await asyncio.sleep(0.5)
    uid = _append_cut_call(follower)
    took, call = await _row_within(committed, uid, 5)
    assert took is not None, f"not reconciled within 5 s (periodic pass every {RECONCILE_EVERY_S})"
    assert call.source == "reconciled"
