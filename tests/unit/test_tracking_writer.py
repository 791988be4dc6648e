"""The call tracker's writer: a call whose progress cannot be written (its own bad data) is
given up after a few attempts, logged and counted, without holding up any other call; while
the database is away nothing is given up."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from siaga112.calls.recorder import CallFacts, CallProgress
from siaga112.metrics import Metrics
from siaga112.telephony import tracking
from siaga112.telephony.tracking import EVICT_EVERY_S, MAX_WRITE_ATTEMPTS, CallTracker


def join(uniqueid: str) -> dict[str, str]:
    return {
        "Event": "QueueCallerJoin",
        "Queue": "emergency",
        "Uniqueid": uniqueid,
        "Linkedid": uniqueid,
        "Channel": f"PJSIP/carrier-{uniqueid}",
        "CallerIDNum": "+6281234567890",
        "Timestamp": f"{datetime.now(UTC).timestamp():.6f}",
    }


class FakeCalls:
    """The calls table as the tracker sees it: progress writes, and creation of missing rows."""

    def __init__(self) -> None:
        self.rows: dict[str, CallProgress] = {}
        self.created: list[str] = []
        self.poison: set[str] = set()
        self.down = False
        self.attempts = 0

    async def write(self, updates: list[CallProgress]) -> set[str]:
        self.attempts += 1
        if self.down:
            raise OperationalError("UPDATE calls", {}, ConnectionRefusedError("db away"))
        if any(u.uniqueid in self.poison for u in updates):
            raise IntegrityError("UPDATE calls", {}, ValueError("violates check constraint"))
        missing = {u.uniqueid for u in updates if u.uniqueid not in self.created}
        for update in updates:
            if update.uniqueid not in missing:
                self.rows[update.uniqueid] = update
        return missing

    async def create(self, facts: CallFacts, _at: datetime) -> None:
        self.created.append(facts.uniqueid)


def tracker_for(calls: FakeCalls, metrics: Metrics) -> CallTracker:
    return CallTracker(
        write_progress=calls.write,
        create_call=calls.create,
        metrics=metrics,
        retry_delay_s=0,
    )


async def test_one_bad_call_is_given_up_and_the_others_are_written() -> None:
    calls, metrics = FakeCalls(), Metrics()
    calls.poison = {"2.2"}
    tracker = tracker_for(calls, metrics)
    for uid in ("1.1", "2.2", "3.3"):
        tracker.feed_raw(join(uid))
    await tracker.flush()
    # The good calls did not wait for the bad one.
    assert set(calls.rows) == {"1.1", "3.3"}
    assert all(calls.rows[u].state == "queued" for u in ("1.1", "3.3"))
    for _ in range(MAX_WRITE_ATTEMPTS + 2):
        await tracker.flush()
    assert metrics.counters["call_progress_rejected"] == 1
    assert "2.2" not in calls.rows
    attempts = calls.attempts
    await tracker.flush()
    assert calls.attempts == attempts, "nothing left to retry"


async def test_nothing_is_given_up_while_the_database_is_away() -> None:
    calls, metrics = FakeCalls(), Metrics()
    calls.down = True
    tracker = tracker_for(calls, metrics)
    tracker.feed_raw(join("4.4"))
    tracker.feed_raw(join("5.5"))
    for _ in range(2 * MAX_WRITE_ATTEMPTS + 2):
        await tracker.flush()
    assert calls.rows == {}
    assert metrics.counters["call_progress_rejected"] == 0
    calls.down = False
    await tracker.flush()
    assert set(calls.rows) == {"4.4", "5.5"}
    assert sorted(calls.created) == ["4.4", "5.5"]


@pytest.mark.parametrize("bad_first", [True, False])
async def test_later_progress_of_a_recovered_call_is_written(bad_first: bool) -> None:
    calls, metrics = FakeCalls(), Metrics()
    calls.poison = {"6.6"} if bad_first else set()
    tracker = tracker_for(calls, metrics)
    tracker.feed_raw(join("6.6"))
    await tracker.flush()
    calls.poison = set()
    await tracker.flush()
    assert calls.rows["6.6"].state == "queued"
    assert metrics.counters["call_progress_rejected"] == 0


async def test_a_deadlock_with_another_writer_is_retried_not_held_against_the_call() -> None:
    calls, metrics = FakeCalls(), Metrics()
    tracker = tracker_for(calls, metrics)
    tracker.feed_raw(join("7.7"))
    deadlocks = {"left": 2 * MAX_WRITE_ATTEMPTS}
    write = calls.write

    class Deadlock(Exception):
        sqlstate = "40P01"

    async def deadlocking(updates: list[CallProgress]) -> set[str]:
        if deadlocks["left"] > 0:
            deadlocks["left"] -= 1
            raise DBAPIError("UPDATE calls", {}, Deadlock("deadlock detected"))
        return await write(updates)

    tracker._write = deadlocking
    for _ in range(2 * MAX_WRITE_ATTEMPTS):
        await tracker.flush()
    assert metrics.counters["call_progress_rejected"] == 0
    assert calls.rows["7.7"].state == "queued"


def test_finished_calls_are_looked_for_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """_evict runs after every flush (up to 20 a second) and walks every call kept: a finished
    call is forgotten after keep_terminal_s, looked for once a second, not at every flush."""
    calls, metrics = FakeCalls(), Metrics()
    tracker = CallTracker(
        write_progress=calls.write, create_call=calls.create, metrics=metrics, keep_terminal_s=5
    )
    now = [1000.0]
    monkeypatch.setattr(tracking, "time", SimpleNamespace(monotonic=lambda: now[0]))
    for uid in ("8.8", "9.9"):
        tracker.feed_raw(join(uid))
    tracker._dirty.clear()  # written
    tracker._terminal_since["8.8"] = now[0] - 10  # finished long enough ago
    tracker._evict()
    assert "8.8" not in tracker.states
    tracker._terminal_since["9.9"] = now[0] - 10
    now[0] += EVICT_EVERY_S / 2
    tracker._evict()
    assert "9.9" in tracker.states, "looked for again within the second"
    now[0] += EVICT_EVERY_S
    tracker._evict()
    assert "9.9" not in tracker.states
