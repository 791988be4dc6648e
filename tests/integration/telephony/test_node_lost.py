"""Calls in progress on a lost Asterisk node: the follower of that node ends them as cut by
the node's loss (outcome node_lost) once its AMI session has been down long enough, or when
the node comes back from a restart without them; those with a number go on the callback
worklist, anonymous ones are counted apart; other nodes' calls are untouched, and a repeat or
a second follower ends and lists nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.callbacks.service import list_callbacks
from siaga112.calls.models import Call
from siaga112.calls.recorder import CallProgress, apply_progress, record_incoming
from siaga112.config import AmiSettings, PbxNodeSettings, Settings
from siaga112.incidents.models import IncidentEvent
from siaga112.metrics import Metrics
from siaga112.operators.models import Operator
from siaga112.operators.service import QueueTarget
from siaga112.runtime.telephony import Telephony
from siaga112.telephony.ami_events import parse_event
from tests.factories import call_facts
from tests.integration.telephony.test_reconcile import cdr_line

Sessions = async_sessionmaker[AsyncSession]


def _nodes(settings: Settings, tmp_path: Path) -> Settings:
    nodes = [
        PbxNodeSettings(name=name, ami_host=f"127.0.0.{i}", sip_address=f"127.0.0.{i}")
        for i, name in ((11, "nodea"), (12, "nodeb"))
    ]
    return settings.model_copy(
        update={
            "ami": AmiSettings(secret=SecretStr("test")),
            "state_dir": tmp_path,
            "pbx": settings.pbx.model_copy(update={"nodes": nodes, "node_lost_after_s": 10.0}),
        }
    )


def _follower(settings: Settings, sessionmaker: Sessions, node: str) -> Telephony:
    (followed,) = [n for n in settings.pbx_nodes if n.name == node]
    return Telephony(
        settings=settings,
        sessionmaker=sessionmaker,
        metrics=Metrics(),
        role="events",
        node=followed,
    )


async def _call(
    sessionmaker: Sessions,
    *,
    node: str,
    at: datetime,
    number: str | None = "081234567890",
    state: str | None = None,
) -> str:
    uid = f"{node}-{at.timestamp():.0f}.{uuid.uuid4().int % 10**6}"
    facts = call_facts(
        uid,
        channel="PJSIP/carrier-00000001",
        caller_number=number,
        caller_e164=None,
        presentation=None if number else "prohib",
        caller_id_available=number is not None,
        callback_number=number,
        node=node,
    )
    async with sessionmaker() as session:
        await record_incoming(session=session, facts=facts, at=at)
        if state is not None:
            await apply_progress(
                session=session,
                updates=[
                    CallProgress(
                        uniqueid=uid,
                        state=state,
                        enqueued_at=at,
                        ringing_at=None,
                        answered_at=at if state in ("answered", "ended") else None,
                        ended_at=at + timedelta(seconds=30) if state == "ended" else None,
                        queue="emergency",
                        operator="6001" if state in ("answered", "ended") else None,
                        hangup_cause=None,
                        outcome="answered" if state == "ended" else None,
                    )
                ],
            )
        await session.commit()
    return uid


async def _calls(sessionmaker: Sessions, uids: list[str]) -> dict[str, Call]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Call).where(Call.uniqueid.in_(uids)))
        return {c.uniqueid: c for c in rows}


async def _lost_lines(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return (
            await session.scalar(
                select(func.count())
                .select_from(IncidentEvent)
                .where(IncidentEvent.data["outcome"].astext == "node_lost")
            )
        ) or 0


async def _lost_audits(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return (
            await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action == "call.node_lost",
                    AuditEvent.actor == "system:node-watch",
                )
            )
        ) or 0


async def test_open_calls_of_a_lost_node_are_ended_and_listed_for_callback_once(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    conf = _nodes(settings, tmp_path)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    before = t0 - timedelta(seconds=20)
    waiting = await _call(sessionmaker, node="nodea", at=before, state="queued")
    talking = await _call(sessionmaker, node="nodea", at=before, state="answered")
    anonymous = await _call(sessionmaker, node="nodea", at=before, number=None)
    finished = await _call(sessionmaker, node="nodea", at=before, state="ended")
    other_node = await _call(sessionmaker, node="nodeb", at=before, state="answered")
    later = await _call(sessionmaker, node="nodea", at=t0 + timedelta(seconds=2))

    follower = _follower(conf, sessionmaker, "nodea")
    assert await follower.check_node_lost(now=t0) == 0
    assert await follower.check_node_lost(now=t0 + timedelta(seconds=9)) == 0
    assert await follower.check_node_lost(now=t0 + timedelta(seconds=11)) == 3

    calls = await _calls(sessionmaker, [waiting, talking, anonymous, finished, other_node, later])
    for uid in (waiting, talking, anonymous):
        assert (calls[uid].state, calls[uid].outcome) == ("abandoned", "node_lost")
        assert calls[uid].ended_at == t0
    assert (calls[talking].operator, calls[talking].answered_at) == ("6001", before)
    assert (calls[finished].state, calls[finished].outcome) == ("ended", "answered")
    assert (calls[other_node].state, calls[other_node].ended_at) == ("answered", None)
    assert calls[later].state == "offered", "offered after the link went down: not this loss"
    assert follower.metrics.counters["calls_lost_with_node"] == 3
    assert follower.metrics.counters["calls_lost_with_node_for_callback"] == 2
    assert follower.metrics.counters["nodes_lost"] == 1
    assert await _lost_lines(sessionmaker) == 3
    assert await _lost_audits(sessionmaker) == 3

    async def worklist() -> tuple[list[str], int]:
        async with sessionmaker() as session:
            page = await list_callbacks(
                session=session,
                status=None,
                reason=None,
                offered_from=before - timedelta(seconds=1),
                offered_to=None,
                limit=50,
                cursor=None,
            )
        ids = {c.id: uid for uid, c in calls.items()}
        return sorted(ids[i.call_id] for i in page.items), page.anonymous

    assert await worklist() == (sorted([waiting, talking]), 1)

    # The same outage checked again, a new outage of the same follower, a second follower after
    # the first: nothing ends twice, nothing is listed twice.
    assert await follower.check_node_lost(now=t0 + timedelta(seconds=30)) == 0
    second = _follower(conf, sessionmaker, "nodea")
    assert await second.check_node_lost(now=t0 + timedelta(seconds=1)) == 0
    assert await second.check_node_lost(now=t0 + timedelta(seconds=20)) == 0
    assert await worklist() == (sorted([waiting, talking]), 1)
    assert await _lost_lines(sessionmaker) == 3
    assert await _lost_audits(sessionmaker) == 3
    assert "calls_lost_with_node" not in second.metrics.counters
    assert (await _calls(sessionmaker, [other_node]))[other_node].state == "answered"


async def test_node_back_from_a_restart_ends_the_calls_it_no_longer_has(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    conf = _nodes(settings, tmp_path)
    now = datetime.now(UTC)
    booted = now - timedelta(seconds=30)
    gone = await _call(sessionmaker, node="nodea", at=booted - timedelta(minutes=2), state="queued")
    still_there = await _call(
        sessionmaker, node="nodea", at=booted - timedelta(minutes=2), state="answered"
    )
    new = await _call(sessionmaker, node="nodea", at=booted + timedelta(seconds=5))
    other_node = await _call(sessionmaker, node="nodeb", at=booted - timedelta(minutes=2))

    follower = _follower(conf, sessionmaker, "nodea")
    answers: dict[str, list[Mapping[str, str]]] = {
        "QueueStatus": [{"Event": "QueueStatusComplete"}],
        # A channel the old calls' clocks put before the boot but that Asterisk still has:
        # never taken for lost.
        "CoreShowChannels": [
            {"Event": "CoreShowChannel", "Uniqueid": still_there, "Context": "from-internal"},
            {"Event": "CoreShowChannelsComplete"},
        ],
    }

    async def send_list(
        action: Mapping[str, str], *, within_s: float = 10.0
    ) -> list[Mapping[str, str]]:
        return answers[action["Action"]]

    follower.ami.send_list = send_list  # type: ignore[method-assign]
    booted_event = parse_event(
        {"Event": "FullyBooted", "Uptime": "30", "LastReload": "30", "Status": "Fully Booted"},
        received_at=now,
    )
    assert booted_event is not None
    follower._on_event(booted_event)
    for task in list(follower._reapplying):
        task.cancel()
    await follower.resync()
    await follower.resync()

    calls = await _calls(sessionmaker, [gone, still_there, new, other_node])
    assert (calls[gone].state, calls[gone].outcome, calls[gone].ended_at) == (
        "abandoned",
        "node_lost",
        booted,
    )
    assert calls[still_there].state == "answered"
    assert calls[new].state == "offered"
    assert calls[other_node].state == "offered"
    assert follower.metrics.counters["calls_lost_with_node"] == 1
    assert await _lost_lines(sessionmaker) == 1
    assert await _lost_audits(sessionmaker) == 1


async def test_the_nodes_own_record_of_the_end_replaces_the_loss(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    """A node only unreachable, not dead: its CDR line, read by reconciliation when it is back,
    says how the call really ended, and the call leaves the worklist."""
    conf = _nodes(settings, tmp_path)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    uid = await _call(sessionmaker, node="nodea", at=t0 - timedelta(seconds=5), state="answered")
    follower = _follower(conf, sessionmaker, "nodea")
    await follower.check_node_lost(now=t0)
    assert await follower.check_node_lost(now=t0 + timedelta(seconds=10)) == 1
    end = t0 + timedelta(seconds=40)
    follower.reconciler.path.parent.mkdir(parents=True, exist_ok=True)
    follower.reconciler.path.write_text(
        cdr_line(
            uid,
            start=f"{(t0 - timedelta(seconds=5)).timestamp():.6f}",
            answer=f"{(t0 - timedelta(seconds=5)).timestamp():.6f}",
            end=f"{end.timestamp():.6f}",
            siaga112_enqueued=f"{(t0 - timedelta(seconds=5)).timestamp():.6f}",
            siaga112_answered=f"{(t0 - timedelta(seconds=4)).timestamp():.6f}",
        )
    )
    await follower.reconciler.run_once()
    call = (await _calls(sessionmaker, [uid]))[uid]
    assert (call.state, call.outcome, call.ended_at) == ("ended", "answered", end)


async def test_one_node_unreachable_ends_no_call(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    """With one node (no `pbx.nodes`), an AMI session down for longer than
    `node_lost_after_s` is a blip or a slow reconnect, not a dead PBX: its calls stay open."""
    conf = settings.model_copy(
        update={
            "ami": AmiSettings(secret=SecretStr("test")),
            "state_dir": tmp_path,
            "pbx": settings.pbx.model_copy(update={"node_lost_after_s": 10.0}),
        }
    )
    (only,) = conf.pbx_nodes
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    talking = await _call(
        sessionmaker, node=only.name, at=t0 - timedelta(seconds=20), state="answered"
    )
    follower = _follower(conf, sessionmaker, only.name)
    assert await follower.check_node_lost(now=t0) == 0
    assert await follower.check_node_lost(now=t0 + timedelta(seconds=60)) == 0
    call = (await _calls(sessionmaker, [talking]))[talking]
    assert (call.state, call.outcome) == ("answered", None)
    assert await _lost_lines(sessionmaker) == 0


async def test_a_call_control_instance_acts_on_every_node(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    """`serve --api-only --call-control` with several nodes: a link per node, and call control
    that sends each action to the call's own node (never node A's link for node B's call)."""
    conf = _nodes(settings, tmp_path)
    control = Telephony(settings=conf, sessionmaker=sessionmaker, metrics=Metrics(), role="control")
    assert set(control.links) == {"nodea", "nodeb"}
    assert not control.follows_events
    assert type(control.control).__name__ == "NodeCallControl"


async def test_an_actions_only_session_logging_in_puts_the_operators_back_on_its_node(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    """A node back from a restart has empty dynamic queues. Its follower puts the operators
    back at FullyBooted; when the follower is down too, any serve's actions-only session does
    it as it logs in to the node again (on that node only)."""
    conf = _nodes(settings, tmp_path)
    control = Telephony(settings=conf, sessionmaker=sessionmaker, metrics=Metrics(), role="control")
    extension = f"7{uuid.uuid4().int % 10**6:06d}"
    async with sessionmaker() as session:
        session.add(
            Operator(
                extension=extension,
                name="Operator",
                logged_in=True,
                paused=True,
                pause_reason="rapat",
            )
        )
        await session.commit()
    sent: dict[str, list[dict[str, Any]]] = {name: [] for name in control.links}
    for name, link in control.links.items():

        async def send_action(
            action: dict[str, Any], *, as_list: bool = False, name: str = name
        ) -> dict[str, str]:
            sent[name].append(action)
            return {"Response": "Success"}

        link._manager.send_action = send_action
    await control.links["nodeb"]._on_login_cb()
    ours = [
        (a["Action"], a["Queue"])
        for a in sent["nodeb"]
        if a.get("Interface") == f"PJSIP/{extension}"
    ]
    queues = QueueTarget.for_settings(conf.pbx).queues
    assert ours == [(action, q) for q in queues for action in ("QueueAdd", "QueuePause")]
    assert sent["nodeb"][0] == {"Action": "Events", "EventMask": "off"}
    assert sent["nodea"] == []


async def test_a_lost_session_forgets_when_the_last_asterisk_started(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    """The restart cue (FullyBooted's Uptime) belongs to one Asterisk process: once the
    session is lost, the next login's resync must not take the old start for the new one."""
    follower = _follower(_nodes(settings, tmp_path), sessionmaker, "nodea")
    booted = parse_event(
        {"Event": "FullyBooted", "Uptime": "30", "LastReload": "30", "Status": "Fully Booted"},
        received_at=datetime.now(UTC),
    )
    assert booted is not None
    follower._on_event(booted)
    for task in list(follower._reapplying):
        task.cancel()
    assert follower._booted_at is not None
    follower.ami._on_disconnect(follower.ami._manager, None)
    assert follower._booted_at is None
