"""Operators' states from AMI queue member events: parsing, the mapping to the states the API
shows, de-duplication of Asterisk's repeated reports, resynchronisation from QueueStatus, and the
writer that stores them off the event path. No sockets."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from siaga112.callcontrol.protocol import QueueMemberState
from siaga112.metrics import Metrics
from siaga112.operators.live import OperatorSnapshot, OperatorStateChange
from siaga112.telephony.ami_events import Malformed, QueueMemberChanged, parse_event
from siaga112.telephony.operator_states import OperatorStates, OperatorStateWriter, Pending

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
QUEUE = "emergency"


def member_event(
    event: str = "QueueMemberStatus",
    *,
    interface: str = "PJSIP/7001",
    queue: str = QUEUE,
    status: str = "1",
    paused: str = "0",
    reason: str = "",
    in_call: str = "0",
    seconds: float = 0.0,
) -> dict[str, str]:
    """A queue member event with the fields app_queue sends (Asterisk 22)."""
    return {
        "Event": event,
        "Privilege": "agent,all",
        "Timestamp": f"{(T0 + timedelta(seconds=seconds)).timestamp():.6f}",
        "Queue": queue,
        "MemberName": interface.rpartition("/")[2],
        "Interface": interface,
        "StateInterface": interface,
        "Membership": "dynamic",
        "Penalty": "0",
        "CallsTaken": "0",
        "LastCall": "0",
        "LastPause": "0",
        "LoginTime": "1795420800",
        "InCall": in_call,
        "Status": status,
        "Paused": paused,
        "PausedReason": reason,
        "Ringinuse": "0",
        "Wrapuptime": "0",
    }


def parsed(message: dict[str, str]) -> QueueMemberChanged:
    event = parse_event(message, received_at=T0)
    assert isinstance(event, QueueMemberChanged), event
    return event


def test_member_events_parse_into_one_typed_change() -> None:
    event = parsed(member_event("QueueMemberPause", paused="1", reason="istirahat", seconds=2.5))
    assert event.change == "pause"
    assert (event.queue, event.operator, event.interface) == (QUEUE, "7001", "PJSIP/7001")
    assert (event.status, event.paused, event.pause_reason, event.in_call) == (
        1,
        True,
        "istirahat",
        False,
    )
    assert event.at == T0 + timedelta(seconds=2.5)
    kinds = {
        name: parsed(member_event(name)).change
        for name in ("QueueMemberAdded", "QueueMemberRemoved", "QueueMemberStatus")
    }
    assert kinds == {
        "QueueMemberAdded": "added",
        "QueueMemberRemoved": "removed",
        "QueueMemberStatus": "status",
    }


def test_member_event_without_queue_is_malformed_not_dropped_silently() -> None:
    message = member_event()
    del message["Queue"]
    event = parse_event(message, received_at=T0)
    assert isinstance(event, Malformed)
    assert event.event_name == "QueueMemberStatus"


def test_states_map_as_the_api_shows_them() -> None:
    cases = {
        ("QueueMemberAdded", "1", "0", "0"): "idle",
        ("QueueMemberStatus", "6", "0", "0"): "ringing",
        ("QueueMemberStatus", "7", "0", "1"): "ringing",
        ("QueueMemberStatus", "2", "0", "1"): "in_call",
        ("QueueMemberStatus", "1", "0", "1"): "in_call",
        ("QueueMemberPause", "1", "1", "0"): "paused",
        ("QueueMemberStatus", "2", "1", "1"): "in_call",
        ("QueueMemberStatus", "5", "0", "0"): "offline",
        ("QueueMemberStatus", "4", "1", "0"): "offline",
        ("QueueMemberRemoved", "1", "0", "0"): "logged_out",
    }
    for (name, status, paused, in_call), expected in cases.items():
        states = OperatorStates(queue=QUEUE)
        change = states.apply(
            parsed(member_event(name, status=status, paused=paused, in_call=in_call))
        )
        assert change is not None
        assert change.state == expected, (name, status, paused, in_call)


def test_repeated_reports_give_one_change_each_time_the_state_moves() -> None:
    states = OperatorStates(queue=QUEUE)
    stream = [
        member_event("QueueMemberAdded", status="1"),
        member_event(status="1"),
        member_event(status="1"),
        member_event(status="6", seconds=1),
        member_event(status="6", seconds=1.1),
        member_event(status="2", in_call="1", seconds=2),
        member_event(status="2", in_call="1", seconds=3),
        member_event(status="1", seconds=9),
        member_event("QueueMemberPause", paused="1", reason="briefing", seconds=10),
        member_event(paused="1", reason="briefing", seconds=10.5),
        member_event("QueueMemberPause", paused="1", reason="istirahat", seconds=11),
        member_event("QueueMemberRemoved", seconds=12),
        member_event("QueueMemberRemoved", seconds=12),
    ]
    changes = [c for m in stream if (c := states.apply(parsed(m))) is not None]
    assert [(c.state, c.pause_reason) for c in changes] == [
        ("idle", None),
        ("ringing", None),
        ("in_call", None),
        ("idle", None),
        ("paused", "briefing"),
        ("paused", "istirahat"),  # a new reason is a change a supervisor wants to see
        ("logged_out", None),
    ]
    assert [c.at for c in changes][:2] == [T0, T0 + timedelta(seconds=1)]
    assert all(c.extension == "7001" and c.queue == QUEUE and not c.resync for c in changes)


def test_other_queues_are_not_the_operators_state() -> None:
    states = OperatorStates(queue=QUEUE)
    assert states.apply(parsed(member_event(queue="emergency-low", status="6"))) is None
    assert states.apply(parsed(member_event(queue="siaga112-bench", status="2"))) is None
    assert states.current == {}


def member(interface: str, *, device: str = "not_in_use", paused: bool = False,
           reason: str = "", queue: str = QUEUE) -> QueueMemberState:  # fmt: skip
    return QueueMemberState(
        queue=queue,
        interface=interface,
        name=interface,
        device=device,
        paused=paused,
        pause_reason=reason,
        in_call=False,
    )


def test_snapshot_sets_listed_members_and_logs_out_the_others() -> None:
    states = OperatorStates(queue=QUEUE)
    for ext in ("7001", "7002", "7003"):
        states.apply(parsed(member_event("QueueMemberAdded", interface=f"PJSIP/{ext}")))
    snap = states.apply_snapshot(
        [
            member("PJSIP/7001"),  # unchanged: no change
            member("PJSIP/7002", paused=True, reason="rapat"),
            member("PJSIP/7004", device="unavailable"),  # new to this process
            member("PJSIP/7003", queue="emergency-low"),  # another queue: 7003 left ours
        ],
        at=T0,
    )
    assert isinstance(snap, OperatorSnapshot)
    assert snap.present == frozenset({"7001", "7002", "7004"})
    assert [(c.extension, c.state, c.pause_reason) for c in snap.changes] == [
        ("7002", "paused", "rapat"),
        ("7004", "offline", None),
        ("7003", "logged_out", None),
    ]
    assert all(c.resync and c.at == T0 for c in snap.changes)
    again = states.apply_snapshot(
        [member("PJSIP/7001"), member("PJSIP/7002", paused=True, reason="rapat")], at=T0
    )
    assert [(c.extension, c.state) for c in again.changes] == [("7004", "logged_out")]


_EVENT = st.builds(
    member_event,
    st.sampled_from(
        ["QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved"]
    ),
    interface=st.sampled_from(["PJSIP/7001", "PJSIP/7002"]),
    queue=st.sampled_from([QUEUE, QUEUE, "emergency-low"]),
    status=st.sampled_from(["1", "2", "5", "6"]),
    paused=st.sampled_from(["0", "1"]),
    reason=st.sampled_from(["", "break"]),
    in_call=st.sampled_from(["0", "1"]),
)


@given(st.lists(_EVENT, max_size=40))
def test_changes_never_repeat_and_end_at_the_last_reported_state(
    stream: list[dict[str, str]],
) -> None:
    states = OperatorStates(queue=QUEUE)
    out: dict[str, list[tuple[str, str | None]]] = {}
    for message in stream:
        change = states.apply(parsed(message))
        if change is not None:
            out.setdefault(change.extension, []).append((change.state, change.pause_reason))
    for seq in out.values():
        assert all(a != b for a, b in itertools.pairwise(seq))
    # The last emitted state of each operator is what a fresh reducer makes of its last event.
    for ext, seq in out.items():
        last = [m for m in stream if m["Queue"] == QUEUE and m["Interface"] == f"PJSIP/{ext}"][-1]
        fresh = OperatorStates(queue=QUEUE).apply(parsed(last))
        assert fresh is not None
        assert seq[-1] == (fresh.state, fresh.pause_reason)


def change(ext: str, state: str = "idle") -> OperatorStateChange:
    return OperatorStateChange(
        extension=ext,
        state=state,  # type: ignore[arg-type]
        pause_reason=None,
        at=T0,
        queue=QUEUE,
    )


async def test_writer_keeps_order_batches_and_retries_after_a_failure() -> None:
    written: list[list[Pending]] = []
    fail = [True]

    async def write(batch: list[Pending]) -> int:
        if fail[0]:
            fail[0] = False
            raise ConnectionError("database down")
        written.append(batch)
        return len(batch)

    metrics = Metrics()
    writer = OperatorStateWriter(write=write, metrics=metrics, flush_interval_s=0.01)
    await writer.start()
    try:
        writer.push(change("7001"))
        writer.push(change("7002"))
        for _ in range(200):
            if written:
                break
            await asyncio.sleep(0.01)
        writer.push(change("7001", "ringing"))
    finally:
        await writer.stop()
    flat = [item for batch in written for item in batch]
    assert flat == [change("7001"), change("7002"), change("7001", "ringing")]
    assert metrics.counters["operator_state_write_failures"] == 1
    assert metrics.counters["operator_state_events"] == 3
