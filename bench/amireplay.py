"""The events worker's CPU per call without Asterisk: a recorded AMI transcript of one answered
112 call (tests/fixtures/ami/answered-call.txt, Asterisk 22.10, a SIPp operator phone) replayed
many times with fresh Uniqueids through what the events worker does with each event
(panoramisk's parsing, the manager's event filter as rendered, the pre-parse skip, parse_event,
the call tracker or operator states). Prints the events per call at each stage and the CPU ms
per call (``python -m bench.amireplay``); run it on two checkouts to compare them.

``--database``: the events worker's whole path, its writes too. A database of its own
(``siaga112_bench_amireplay``, dropped, created and migrated; dropped again at the end), the
calls' rows first (as the AGI step writes them, not counted), then the calls replayed at
``--rate`` calls/s, each call's events at their recorded times (4 s from the first to the last),
through the events worker's own code: the bytes into ``Telephony(role="events")``'s AMI
protocol (panoramisk's, or the checkout's own), its dispatch (pre-parse skip, parsing, call
tracker, callback legs, operator states), its call-progress and operator-state writers.
Prints this process's CPU and its PostgreSQL backends' per call, the SQL statements and
transactions per call, and the rows of calls updated per call.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from panoramisk.message import Message

from siaga112.calls.recorder import CallFacts, CallProgress, record_incoming
from siaga112.config import Settings
from siaga112.metrics import Metrics
from siaga112.pbxconf.render import render_config
from siaga112.telephony.ami_events import QueueMemberChanged, parse_event
from siaga112.telephony.operator_states import OperatorStates
from siaga112.telephony.tracking import CallTracker

TRANSCRIPT = Path(__file__).parent.parent / "tests/fixtures/ami/answered-call.txt"
CALLER, OPERATOR_LEG = "1795422356.8", "1795422357.9"


def _filters(settings: Settings) -> list[tuple[str, str | None, str | None, str | None]]:
    """(name, header, method, value) of each include filter in the rendered manager.conf."""
    conf = render_config(
        settings,
        operator_passwords={e: "x" for e in settings.pbx.demo_operators},
        hostname="h",
    )
    out: list[tuple[str, str | None, str | None, str | None]] = []
    for line in conf["manager.conf"].splitlines():
        m = re.match(
            r"^eventfilter\(action\(include\),name\((\w+)\)"
            r"(?:,header\((\w+)\),method\((\w+)\))?\) =\s*(\S*)$",
            line,
        )
        if m:
            out.append((m.group(1), m.group(2), m.group(3), m.group(4) or None))
    return out


def _passes(message: Mapping[str, Any], filters: Sequence[tuple[str, ...] | Any]) -> bool:
    name = str(message.get("Event", "")).lower()
    for fname, header, method, value in filters:
        if fname.lower() != name:
            continue
        if header is None:
            return True
        got = str(message.get(header, ""))
        if (method == "exact" and got == value) or (
            method == "starts_with" and got.startswith(value or "")
        ):
            return True
    return False


async def _write(_updates: list[CallProgress]) -> set[str]:
    return set()


async def _create(_facts: CallFacts, _at: datetime) -> None:
    return None


def _blocks() -> list[str]:
    blocks = [
        b for b in TRANSCRIPT.read_text().replace("\r\n", "\n").split("\n\n") if "Event:" in b
    ]
    return [b for b in blocks if "Event: FullyBooted" not in b]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.amireplay", description=__doc__)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--database", action="store_true", help="the whole events path, with its writes")
    p.add_argument("--rate", type=float, default=50.0, help="calls/s with --database (50)")
    p.add_argument("--database-url", help=f"with --database; default: the server, {DATABASE}")
    p.add_argument(
        "--member-events",
        action="store_true",
        help="with --database: keep the operators' queue member events (every call of the"
        " replay is answered by the one recorded operator; bench/surge's members send none)",
    )
    args = p.parse_args(argv)
    if args.database:
        return asyncio.run(_with_database(args))
    settings = Settings()
    filters = _filters(settings)
    blocks = _blocks()
    tracker = CallTracker(write_progress=_write, create_call=_create, metrics=Metrics())
    states = OperatorStates(queue=settings.pbx.queue_name)
    ignores = getattr(tracker, "ignores", None)
    recorded = len(blocks)
    # What Asterisk sends at all (disabledevents, the rendered eventfilter): decided once.
    sent = []
    for block in blocks:
        message = Message.from_line(block.replace("\n", "\r\n"))
        if message is not None and _passes(message, filters):
            sent.append(block.replace("\n", "\r\n"))
    counts = {"recorded": recorded * args.calls, "sent": 0, "parsed": 0}
    started = time.process_time()
    for i in range(args.calls):
        caller, leg = f"1800000000.{2 * i}", f"1800000000.{2 * i + 1}"
        for block in sent:
            message = Message.from_line(block.replace(CALLER, caller).replace(OPERATOR_LEG, leg))
            counts["sent"] += 1
            if ignores is not None and ignores(message):
                continue
            counts["parsed"] += 1
            event = parse_event(message, received_at=datetime.now(UTC))
            if isinstance(event, QueueMemberChanged):
                states.apply(event)
            elif event is not None:
                tracker.feed(event)
    used = time.process_time() - started
    n = args.calls
    print(
        f"{TRANSCRIPT.name}: per call {counts['recorded'] / n:g} events recorded,"
        f" {counts['sent'] / n:g} sent by Asterisk, {counts['parsed'] / n:g} parsed;"
        f" events path CPU {used * 1000 / n:.3f} ms per call ({n} calls)"
    )
    return 0


DATABASE = "siaga112_bench_amireplay"


class _Transport:
    """The AMI connection's socket: nothing is sent in a replay."""

    def write(self, _data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _sent_messages(settings: Settings) -> list[tuple[float, str]]:
    """(seconds after the call's first event, raw message) of each event Asterisk sends."""
    filters = _filters(settings)
    out: list[tuple[float, str]] = []
    first: float | None = None
    for block in _blocks():
        raw = block.replace("\n", "\r\n")
        message = Message.from_line(raw)
        if message is None or not _passes(message, filters):
            continue
        stamp = float(message.get("Timestamp", "0") or 0)
        first = stamp if first is None else first
        out.append((stamp - first, raw))
    return out


async def _with_database(args: argparse.Namespace) -> int:
    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    from bench.cpu import loadavg, proc_cpu_s
    from siaga112.db.manage import connect, drop_database, upgrade
    from siaga112.db.session import make_engine, make_sessionmaker
    from siaga112.runtime.telephony import Telephony
    from siaga112.telephony.facts import facts_from_env

    base = Settings()
    url = args.database_url or make_url(base.database_url_str).set(
        database=DATABASE
    ).render_as_string(hide_password=False)
    if make_url(url).database == make_url(base.database_url_str).database:
        raise SystemExit("refusing to use the development database")
    await drop_database(url)
    await asyncio.to_thread(upgrade, url)
    settings = Settings(database_url=url)
    engine = make_engine(settings)
    sessionmaker = make_sessionmaker(engine)
    metrics = Metrics()
    telephony = Telephony(
        settings=settings, sessionmaker=sessionmaker, metrics=metrics, role="events"
    )
    schedule = _sent_messages(settings)
    if not args.member_events:
        schedule = [(t, raw) for t, raw in schedule if "Event: QueueMember" not in raw]
    n = args.calls
    ids = [(f"1800000000.{2 * i}", f"1800000000.{2 * i + 1}") for i in range(n)]
    # The calls' rows, as the AGI step writes them (not counted).
    at = datetime.now(UTC)
    async with sessionmaker() as session:
        for i, (caller, _leg) in enumerate(ids):
            facts = facts_from_env(
                {
                    "agi_uniqueid": caller,
                    "agi_linkedid": caller,
                    "agi_channel": f"PJSIP/carrier-{i:08x}",
                    "agi_callerid": f"+62812{i:08d}",
                    "agi_calleridname": "unknown",
                }
            )
            await record_incoming(session=session, facts=facts, at=at)
            if i % 500 == 499:
                await session.commit()
        await session.commit()

    statements = 0

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    # A plain connection of the bench's own for the figures (its pid is left out).
    probe = await connect(url)

    async def backends_cpu() -> dict[int, float]:
        rows = await probe.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {int(r["pid"]): proc_cpu_s(int(r["pid"]), children=False) or 0.0 for r in rows}

    async def counters() -> tuple[int, int]:
        """Transactions committed in the database, rows of calls updated. A backend reports
        them when it ends at the latest: the engine's connections are closed first."""
        await engine.dispose()
        await asyncio.sleep(1.0)
        row = await probe.fetchrow(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
            " (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'calls')"
        )
        assert row is not None
        return int(row[0]), int(row[1])

    xact0, upd0 = await counters()
    # The worker's own writers, as Telephony.start runs them (no AMI login, no CDR file).
    await telephony.tracker.start()
    await telephony.operator_writer.start()
    # The AMI connection's protocol as panoramisk connects it (each checkout's own), fed the
    # bytes Asterisk would send: each event in a read of its own.
    manager = telephony.ami._manager
    protocol = manager.config["protocol_factory"]()
    protocol.connection_made(_Transport())
    manager.protocol, protocol.factory, protocol.log = protocol, manager, manager.log
    protocol.version = "9.0.0"
    cpu0 = await backends_cpu()
    statements = 0
    load0 = loadavg()
    started_cpu, started = time.process_time(), time.monotonic()
    events = sorted((i / args.rate + offset, i, raw) for i in range(n) for offset, raw in schedule)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for due, i, raw in events:
        delay = t0 + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        caller, leg = ids[i]
        text = raw.replace(CALLER, caller).replace(OPERATOR_LEG, leg)
        protocol.data_received(f"{text}\r\n\r\n".encode())
    # The writers' last flushes (50 and 10 ms after the last change, then a statement).
    await asyncio.sleep(1.0)
    used_cpu, wall = time.process_time() - started_cpu, time.monotonic() - started
    counted = statements
    cpu1 = await backends_cpu()
    load1 = loadavg()
    backends = sum(v - cpu0.get(pid, 0.0) for pid, v in cpu1.items())
    await telephony.tracker.stop()
    await telephony.operator_writer.stop()
    xact1, upd1 = await counters()
    done = await probe.fetchval(
        "SELECT count(*) FROM calls WHERE state = 'ended' AND operator IS NOT NULL"
    )
    lines = await probe.fetchval(
        "SELECT count(*) FROM incident_events WHERE kind IN ('call_answered', 'call_ended')"
    )
    await probe.close()
    await engine.dispose()
    await drop_database(url)
    print(
        f"{TRANSCRIPT.name} with the database ({len(schedule)} events per call"
        f"{', member events kept' if args.member_events else ', no member events'}):"
        f" {n} calls at {args.rate:g}/s over {wall:.1f} s,"
        f" load {load0:.2f}->{load1:.2f}\n"
        f"  per call: events worker CPU {used_cpu * 1000 / n:.3f} ms, its PostgreSQL backends"
        f" {backends * 1000 / n:.3f} ms; SQL statements {counted / n:.2f}, transactions"
        f" {(xact1 - xact0) / n:.2f}, calls rows updated {(upd1 - upd0) / n:.2f}\n"
        f"  calls ended with their operator: {done} of {n}; answered/ended lines {lines}"
        f" (2 per call: {2 * n}); progress writes {metrics.counters['call_progress_writes']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
