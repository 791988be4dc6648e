"""Event stream benchmark: how long a live event takes from Asterisk to an SSE client while a
surge of real calls goes through the real stack (``python -m bench.events``).

One run, about three minutes with the defaults (bench/README.md says what it does and how the
figures are defined):

1. the real stack of ``bench.realstack`` (a database of its own, the Asterisk sandbox with the
   benchmark numbers (the bench queue answered inside Asterisk), ``siaga112 serve`` as a
   subprocess);
2. the cost of writing ``call_offered`` in the AGI statement: the statement with and without
   that row, alternately, against the bench database;
3. SSE clients on ``/v1/events/stream`` (``call_offered``, ``call_answered``, ``call_ended``,
   ``operator_state_changed``), then SIPp calls at rising rates through the siaga112 path (1129:
   Answer, AGI, Queue) while demo operator 6001 is paused and resumed in the operators' queue
   every half second;
4. per rate, latency from Asterisk's event to the moment each client has the event, p50/p99,
   and whether every call's ``call_offered`` reached every client exactly once, in id order.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.realstack import (
    BenchStack,
    Step,
    add_stack_arguments,
    agi_quantiles,
    bench_main,
    bench_stack,
    calls_in_db,
    check_rates,
    log,
    ms,
    q,
    run_step,
    step_caller,
)
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls import recorder
from siaga112.calls.recorder import CallFacts, record_incoming
from siaga112.db.session import asyncpg_dsn
from siaga112_sandbox import pbx

DEFAULT_RATES = (25, 50, 100)
BENCH_DATABASE = "siaga112_bench_events"
TYPES = "call_offered,call_answered,call_ended,operator_state_changed"
TOGGLED_OPERATOR = "6001"
# The statement without the call_offered row: what main wrote before this stream existed.
_OFFERED_ROW = (
    "(VALUES (1, 'created', CAST(:event_data AS jsonb)),\n"
    "                      (2, 'call_offered', CAST(:offered_data AS jsonb)))"
)
_CREATED_ONLY = "(VALUES (1, 'created', CAST(:event_data AS jsonb)))"


# ---------------------------------------------------------------------------------------------
# the cost of call_offered on the AGI path


def _facts() -> CallFacts:
    uid = f"{time.time():.0f}.{uuid.uuid4().int % 10**9}"
    return CallFacts(
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


async def _statement_cost(database_url: str, samples: int) -> dict[str, Any]:
    """record_incoming exactly as the AGI path runs it (autocommit, one statement), with the
    call_offered row and without it, alternately so that both see the same machine."""
    with_offered = recorder._RECORD_SQL
    if _OFFERED_ROW not in with_offered.text:
        raise SystemExit("the AGI statement changed: bench/events cannot take call_offered out")
    without = text(with_offered.text.replace(_OFFERED_ROW, _CREATED_ONLY))
    engine = create_async_engine(database_url, pool_size=2)
    sessions = async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )
    times: dict[str, list[float]] = {"with_call_offered": [], "without_call_offered": []}

    async def once(sql: Any, bucket: str) -> None:
        recorder._RECORD_SQL = sql
        async with sessions() as session:
            started = time.perf_counter()
            await record_incoming(session=session, facts=_facts(), at=datetime.now(UTC))
            await session.commit()
            times[bucket].append(time.perf_counter() - started)

    try:
        for _ in range(50):  # warm the pool and PostgreSQL's plan cache
            await once(with_offered, "with_call_offered")
            await once(without, "without_call_offered")
        for values in times.values():
            values.clear()
        for i in range(samples):
            order = [(with_offered, "with_call_offered"), (without, "without_call_offered")]
            for sql, bucket in order if i % 2 else reversed(order):
                await once(sql, bucket)
    finally:
        recorder._RECORD_SQL = with_offered
        await engine.dispose()
    out: dict[str, Any] = {"samples_each": samples}
    for bucket, values in times.items():
        out[bucket] = {"p50_s": q(values, 0.5), "p99_s": q(values, 0.99)}
    out["p50_difference_s"] = (out["with_call_offered"]["p50_s"] or 0) - (
        out["without_call_offered"]["p50_s"] or 0
    )
    return out


async def _api_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as session:
        key = await create_key(
            session=session,
            name="bench-events",
            role=Role.INTEGRATOR,
            actor=system_actor("bench"),
        )
        await session.commit()
    return key.raw


def api_key(database_url: str) -> str:
    async def run() -> str:
        engine = create_async_engine(database_url)
        try:
            return await _api_key(async_sessionmaker(engine, expire_on_commit=False))
        finally:
            await engine.dispose()

    return asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# SSE clients, in a thread of their own


@dataclass(frozen=True, slots=True)
class Received:
    recv: float  # epoch seconds when the client had the whole event
    id: int
    kind: str
    at: float  # the event's time (Asterisk's, for call_answered/ended and operator events)
    uniqueid: str | None
    extension: str | None


@dataclass
class Client:
    events: list[Received] = field(default_factory=list)
    connects: int = 0
    connected: threading.Event = field(default_factory=threading.Event)


class SseClients:
    def __init__(self, base: str, key: str, count: int) -> None:
        self.base = base
        self.key = key
        self.clients = [Client() for _ in range(count)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sse-clients", daemon=True)

    def start(self) -> None:
        self._thread.start()
        for client in self.clients:
            if not client.connected.wait(timeout=30):
                raise RuntimeError("an SSE client did not connect within 30 s")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._client(c)) for c in self.clients]
        await asyncio.to_thread(self._stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, client: Client) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        # Reads wait for the next event or the 15 s heartbeat.
        timeout = httpx.Timeout(5.0, read=60.0)
        async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=timeout) as http:
            while not self._stop.is_set():
                resume = {"Last-Event-ID": str(client.events[-1].id)} if client.events else {}
                try:
                    async with http.stream(
                        "GET", "/v1/events/stream", params={"types": TYPES}, headers=resume
                    ) as response:
                        response.raise_for_status()
                        client.connects += 1
                        await self._read(response, client)
                except (httpx.HTTPError, OSError) as exc:
                    log(f"SSE client: {type(exc).__name__}; reconnecting")
                    await asyncio.sleep(0.2)

    async def _read(self, response: httpx.Response, client: Client) -> None:
        data = ""
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[6:]
            elif line == ": connected":
                client.connected.set()
            elif line == "" and data:
                now = time.time()
                event = json.loads(data)
                inner = event["data"]
                client.events.append(
                    Received(
                        recv=now,
                        id=event["id"],
                        kind=event["kind"],
                        at=datetime.fromisoformat(event["at"]).timestamp(),
                        uniqueid=inner.get("uniqueid"),
                        extension=inner.get("extension"),
                    )
                )
                data = ""


class PauseToggler:
    """Pauses and resumes demo operator 6001 in the operators' queue (Asterisk CLI), so that
    operator_state_changed events flow during the surge."""

    def __init__(self, stack: BenchStack, every_s: float) -> None:
        self.settings = stack.settings
        self.every_s = every_s
        self.toggles = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PauseToggler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name="pause-toggler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._cli("unpause")

    def _cli(self, verb: str) -> None:
        queue = self.settings.pbx.queue_name
        extra = " reason bench" if verb == "pause" else ""
        try:
            pbx.cli(
                self.settings,
                f"queue {verb} member PJSIP/{TOGGLED_OPERATOR} queue {queue}{extra}",
                timeout=5,
            )
        except pbx.PbxError as exc:
            log(f"pause toggler: {exc}")

    def _main(self) -> None:
        paused = False
        while not self._stop.wait(self.every_s):
            paused = not paused
            self._cli("pause" if paused else "unpause")
            self.toggles += 1


# ---------------------------------------------------------------------------------------------
# one rate


def _latency(values: list[float]) -> dict[str, Any]:
    return {
        "samples": len(values),
        "p50_s": q(values, 0.5),
        "p99_s": q(values, 0.99),
        "max_s": max(values) if values else None,
    }


def wait_quiet(database_url: str, *, within_s: float = 60.0) -> None:
    """Until the service has worked off the last step (no query running in the bench
    database for about a second), so that one step's backlog does not weigh on the next."""

    async def busy() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state <> 'idle' AND pid <> pg_backend_pid()"
            )
            return count
        finally:
            await conn.close()

    deadline = time.monotonic() + within_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = quiet + 1 if asyncio.run(busy()) == 0 else 0
        time.sleep(0.4)
    if quiet < 3:
        log(f"the service was still busy after {within_s:.0f} s; going on")


def wait_recorded(stack: BenchStack, step: Step, within_s: float) -> None:
    """Until every call of the step has its row (AGI, else the AMI tracker or reconciliation)."""
    deadline = time.monotonic() + within_s
    while len(_created(stack, step)) < len(step.uniqueids) and time.monotonic() < deadline:
        time.sleep(0.5)


def wait_for_offered(clients: SseClients, uniqueids: set[str], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(
            uniqueids <= {e.uniqueid for e in c.events if e.kind == "call_offered"}
            for c in clients.clients
        ):
            return
        time.sleep(0.2)


def hot_path(step: Step, created: dict[str, float]) -> dict[str, Any]:
    """What the AGI path did in a step: calls that got their incident id within the budget,
    and channel creation -> incident committed (calls.created_at) per call."""
    delays = [created[u] - start for u, start in step.starts.items() if u in created]
    return {
        "rate": step.rate,
        "seconds": step.seconds,
        "planned": step.planned,
        "sipp_successful": step.sipp_successful,
        "sipp_failed": step.sipp_failed,
        "arrived": step.arrived,
        "achieved_cps": step.achieved_cps,
        "with_incident_in_dialplan": step.with_incident,
        "incident_committed_from_channel_creation": _latency(delays),
        "load_average_1min_at_start": None,
    }


def analyse(
    step: Step, clients: SseClients, created: dict[str, float], window: tuple[float, float]
) -> dict[str, Any]:
    legs = set(step.uniqueids)
    offered: list[float] = []
    commit_to_client: list[float] = []
    answered: list[float] = []
    ended: list[float] = []
    operator: list[float] = []
    missing = duplicates = disorder = 0
    for client in clients.clients:
        events = list(client.events)
        ids = [e.id for e in events]
        disorder += sum(1 for a, b in itertools.pairwise(ids) if b <= a)
        seen: dict[str, int] = {}
        for e in events:
            if e.uniqueid in legs:
                if e.kind == "call_offered":
                    seen[e.uniqueid] = seen.get(e.uniqueid, 0) + 1
                    offered.append(e.recv - step.starts[e.uniqueid])
                    if e.uniqueid in created:
                        commit_to_client.append(e.recv - created[e.uniqueid])
                elif e.kind == "call_answered":
                    answered.append(e.recv - e.at)
                elif e.kind == "call_ended":
                    ended.append(e.recv - e.at)
            elif (
                e.kind == "operator_state_changed"
                and e.extension == TOGGLED_OPERATOR
                and window[0] <= e.recv <= window[1]
            ):
                operator.append(e.recv - e.at)
        missing += len(set(created) - set(seen))
        duplicates += sum(n - 1 for n in seen.values())
    return {
        **hot_path(step, created),
        "calls_without_row": len(legs - set(created)),
        "call_offered_missing": missing,
        "call_offered_duplicates": duplicates,
        "ids_out_of_order": disorder,
        "call_offered_from_channel_creation": _latency(offered),
        "call_offered_from_commit": _latency(commit_to_client),
        "call_answered_from_agentconnect": _latency(answered),
        "call_ended_from_hangup": _latency(ended),
        "operator_state_changed_from_queuememberpause": _latency(operator),
    }


# ---------------------------------------------------------------------------------------------
# the run


def _step(
    stack: BenchStack, args: argparse.Namespace, rate: float, caller: str
) -> tuple[Step, tuple[float, float], float]:
    load = os.getloadavg()[0]
    started = time.time()
    with PauseToggler(stack, args.toggle_every):
        step = run_step(
            stack.settings,
            stack.cdr,
            stack.workdir,
            scenario=stack.scenario,
            variant="siaga112",
            number=pbx.BENCH_AGI_NUMBER,
            caller=caller,
            rate=rate,
            seconds=args.step_seconds,
            hold_ms=int(args.hold * 1000),
        )
    log(step.line().strip())
    return step, (started, time.time()), load


def _created(stack: BenchStack, step: Step) -> dict[str, float]:
    return {u: row[0] for u, row in calls_in_db(stack.database_url, step.uniqueids).items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    with bench_stack(
        module="bench.events",
        database_url=args.database_url,
        default_database=BENCH_DATABASE,
        wait_busy_s=args.wait_busy,
        keep_cdr=args.keep_cdr,
    ) as stack:
        result = stack.result
        result["hold_s"] = args.hold
        result["clients"] = args.clients
        result["load_average_at_start"] = os.getloadavg()
        log(f"AGI statement with and without call_offered: {args.statement_samples} each")
        result["agi_statement"] = asyncio.run(
            _statement_cost(stack.database_url, args.statement_samples)
        )
        key = api_key(stack.database_url)
        control: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        connects: list[list[int]] = []
        for index, rate in enumerate(args.rates):
            if not args.no_control:
                wait_quiet(stack.database_url)
                log(f"control, no SSE client: {rate:g} calls/s for {args.step_seconds:g} s")
                step, _, load = _step(stack, args, rate, step_caller(4, index))
                wait_recorded(stack, step, args.settle)
                control.append(hot_path(step, _created(stack, step)))
                control[-1]["load_average_1min_at_start"] = load
                log(hot_line(control[-1]))
            wait_quiet(stack.database_url)
            clients = SseClients(stack.service.base, key, args.clients)
            clients.start()
            try:
                log(f"{rate:g} calls/s for {args.step_seconds:g} s, {args.clients} SSE clients")
                step, window, load = _step(stack, args, rate, step_caller(3, index))
                wait_recorded(stack, step, args.settle)
                wait_for_offered(clients, set(_created(stack, step)), args.settle)
            finally:
                clients.stop()
            steps.append(analyse(step, clients, _created(stack, step), window))
            steps[-1]["load_average_1min_at_start"] = load
            connects.append([c.connects for c in clients.clients])
            log(line(steps[-1]))
        metrics = stack.service.metrics()
        result["control_steps"] = control
        result["steps"] = steps
        result["client_connects"] = connects
        result["agi_handling"] = agi_quantiles(metrics)
        result["hub"] = {
            "hole_wait_p50_s": metrics.get('siaga112_live_event_hole_wait_seconds{quantile="0.5"}'),
            "hole_wait_p99_s": metrics.get(
                'siaga112_live_event_hole_wait_seconds{quantile="0.99"}'
            ),
            "holes_waited": metrics.get("siaga112_live_event_hole_wait_seconds_count"),
        }
        result["service_counters"] = {k: v for k, v in metrics.items() if k.endswith("_total")}
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result


def _lat(v: dict[str, Any]) -> str:
    return f"p50 {ms(v['p50_s'])}, p99 {ms(v['p99_s'])} ({v['samples']})"


def hot_line(step: dict[str, Any]) -> str:
    return (
        f"{step['rate']:5g}/s: {step['arrived']} calls arrived ({step['achieved_cps']:.1f}/s),"
        f" incident id in the dialplan for {step['with_incident_in_dialplan']};"
        f" channel created -> incident committed"
        f" {_lat(step['incident_committed_from_channel_creation'])};"
        f" load {step['load_average_1min_at_start']:.2f}"
    )


def line(step: dict[str, Any]) -> str:
    def lat(key: str) -> str:
        return _lat(step[key])

    return (
        f"{hot_line(step)}\n"
        f"    calls without a row after the wait {step['calls_without_row']};"
        f" call_offered missing {step['call_offered_missing']}, duplicated"
        f" {step['call_offered_duplicates']}, ids out of order {step['ids_out_of_order']}\n"
        f"    call_offered  channel created -> client {lat('call_offered_from_channel_creation')}"
        f"; committed -> client {lat('call_offered_from_commit')}\n"
        f"    call_answered AgentConnect -> client {lat('call_answered_from_agentconnect')}\n"
        f"    call_ended    Hangup -> client {lat('call_ended_from_hangup')}\n"
        f"    operator_state_changed QueueMemberPause/Status -> client"
        f" {lat('operator_state_changed_from_queuememberpause')}"
    )


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    stmt = result["agi_statement"]
    agi = result["agi_handling"]
    hub = result["hub"]
    with_o, without = stmt["with_call_offered"], stmt["without_call_offered"]
    load = ", ".join(f"{v:.2f}" for v in result["load_average_at_start"])
    lines = [
        "siaga112 event stream benchmark",
        f"command:   {result['command']}",
        f"machine:   {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}"
        f" ({m['service_event_loop']}), {m['asterisk']}, {m['sipp']},"
        f" PostgreSQL {m['postgresql']}; load average at start {load}",
        f"run dir:   {result['run_directory']}",
        "",
        f"AGI statement (record_incoming, autocommit; {stmt['samples_each']} each, alternating):"
        f" with call_offered p50 {ms(with_o['p50_s'])} p99 {ms(with_o['p99_s'])};"
        f" without p50 {ms(without['p50_s'])} p99 {ms(without['p99_s'])};"
        f" p50 difference {stmt['p50_difference_s'] * 1e6:+.0f} us",
        "",
    ]
    if result["control_steps"]:
        lines += [
            "control, no SSE client connected (the hub reads nothing):",
            *(hot_line(s) for s in result["control_steps"]),
            "",
        ]
    lines += [
        f"{result['clients']} SSE client(s) on /v1/events/stream?types={TYPES};"
        f" callers hang up {result['hold_s']:g} s after the answer; demo operator"
        f" {TOGGLED_OPERATOR} paused/resumed in the operators' queue every half second:",
        *(line(s) for s in result["steps"]),
        "",
        f"AGI handling over the run ({int(agi['samples'] or 0)} requests): p50 {ms(agi['p50_s'])},"
        f" p99 {ms(agi['p99_s'])}; over budget {int(agi['over_budget'] or 0)},"
        f" write failures {int(agi['write_failed'] or 0)}",
        f"hub: {int(hub['holes_waited'] or 0)} holes waited for (an earlier id still to commit"
        f" or rolled back): p50 {ms(hub['hole_wait_p50_s'])}, p99 {ms(hub['hole_wait_p99_s'])};"
        f" client connects {result['client_connects']} (more than 1: cut off, resumed)",
        f"CDR: {result['cdr']}",
        f"elapsed {result['elapsed_s']} s",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.events", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_stack_arguments(
        p,
        default_rates=DEFAULT_RATES,
        rates_help="offered calls/s",
        bench_database=BENCH_DATABASE,
        settle_help="seconds to wait for every call's row and event (one reconciliation pass "
        "is 30 s)",
    )
    p.add_argument("--step-seconds", type=float, default=20.0, help="length of a step")
    p.add_argument("--clients", type=int, default=2, help="SSE clients connected")
    p.add_argument(
        "--toggle-every", type=float, default=0.5, help="operator pause/resume period (s)"
    )
    p.add_argument(
        "--statement-samples", type=int, default=1000, help="AGI statements of each variant"
    )
    p.add_argument("--no-control", action="store_true", help="skip the steps without SSE clients")
    args = p.parse_args(argv)
    check_rates(p, args)
    if args.clients < 1:
        p.error("--clients needs at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
