"""Console benchmark: how fast the call-taker screen follows a surge of real calls
(``python -m bench.console``), and how much its first load weighs.

One run, about two minutes with the defaults (bench/README.md says what it does):

1. the real stack of ``bench.realstack`` (a database of its own, the Asterisk sandbox with the
   benchmark numbers, the bench queue's 32 members answered inside Asterisk,
   ``siaga112 serve`` as a subprocess with its workers);
2. five console users, each linked to one member of the bench queue (``bench-op-01`` ..
   ``bench-op-05``: the extension Asterisk names as the one that answered), each signed in to
   ``/console/operator`` in Debian's chromium (Playwright, one browser context each);
3. the first load of the call-taker screen in a fresh context: bytes over the wire (gzip), and
   the time to the screen being ready;
4. SIPp calls at ``--rate`` (25/s) for ``--seconds`` through the siaga112 path (1129: Answer,
   AGI, Queue);
5. per console, from the page's own timings (``window.siaga112Timings``, epoch ms):
   - queue update: from the call's ``offered_at`` (siaga112 recorded it) to the console having
     drawn a queue fetched after that call's ``call_offered`` event;
   - screen pop: from the call's ``answered_at`` (Asterisk's answer, from AMI) to the incident
     panel drawn on the console of the member that answered (its fields and calls, from
     ``GET /v1/incidents/{id}/brief``); "complete" when the full read has added the map, the
     timeline and the caller's history;
   p50/p99/max, and the calls each console missed;
6. where that time goes, per call, from timestamps taken outside the service (``--no-stages``
   leaves them out): the event's row visible in PostgreSQL (a LISTEN connection of the
   bench's own that reads new rows at each NOTIFY), the event read from the service's event
   stream by a plain client (as many streams as consoles, in a thread of their own: the
   server's delivery without any browser), the page receiving it (an init script records when
   the page's EventSource hands it over), and the page having drawn it (5.).

By default the consoles use a `siaga112 serve --api-only --call-control` of their own (the
deployment docs/console.md recommends), on the same machine and database as the serve that
answers AGI; ``--shared-serve`` puts them on that serve instead.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bench.realstack import (
    BenchStack,
    Service,
    Step,
    bench_main,
    bench_stack,
    log,
    ms,
    q,
    run_step,
    step_caller,
)
from siaga112.accounts.models import ConsoleUser
from siaga112.accounts.service import create_user
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112.calls.recorder import CallFacts, CallProgress, apply_progress, record_incoming
from siaga112.config import Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.session import asyncpg_dsn
from siaga112.events.hub import CHANNEL
from siaga112_sandbox import pbx

CONSOLES = 5
# Random per run: the bench database is dropped and re-created, but never sign in with a constant.
PASSWORD = secrets.token_urlsafe(12)
BUDGET_MS = 1000.0
FIRST_LOAD_BUDGET_BYTES = 300 * 1024


@dataclass
class Console:
    username: str
    member: str
    page: Page


async def _users(database_url: str) -> tuple[list[tuple[str, str]], str]:
    """Console operators linked to the bench queue's first members, and a supervisor API key
    for the bench's own stream readers. The link is written directly: bench members are named
    ``bench-op-NN``, not numeric extensions as `siaga112 user create` requires of a centre's
    operators."""
    engine = create_async_engine(database_url)
    out = []
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            key = await create_key(
                session=session,
                name="bench-console-probe",
                role=Role.SUPERVISOR,
                actor=system_actor("bench"),
            )
            for i in range(1, CONSOLES + 1):
                username, member = f"bench-console-{i}", f"bench-op-{i:02d}"
                await create_user(
                    session=session,
                    username=username,
                    display_name=f"Bench {member}",
                    role=Role.OPERATOR,
                    actor=system_actor("bench"),
                    password=PASSWORD,
                )
                await session.execute(
                    update(ConsoleUser)
                    .where(ConsoleUser.username == username)
                    .values(operator_extension=member)
                )
                out.append((username, member))
            await session.commit()
    finally:
        await engine.dispose()
    return out, key.raw


PROBE_READ_S = 0.02
# The stages are timed for the two events the figures are about.
STAGED = ("call_offered", "call_answered")
# What the call-taker page subscribes to (operator.js), so the probe's streams weigh the same.
PAGE_TYPES = (
    "call_offered,call_answered,call_abandoned,call_ended,operator_state_changed,"
    "location_added,location_confirmed,updated,status_changed,note,dispatch_created,"
    "dispatch_status_changed,dispatch_unacknowledged,callback_attempted,callback_result,"
    "callback_dismissed"
)
# Bench only: records when the page's EventSource hands a staged event to the page's own
# listener (before the page applies it), in window.__benchReceived.
RECEIVED_SCRIPT = """
(() => {
  const staged = new Set(STAGED);
  const received = [];
  window.__benchReceived = received;
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, listener, options) {
    if (!staged.has(type)) return add.call(this, type, listener, options);
    return add.call(this, type, function (msg) {
      try {
        const e = JSON.parse(msg.data);
        const at = performance.timeOrigin + performance.now();
        received.push({ kind: type, id: e.incident_id, at });
      } catch (err) { /* the page reports bad events itself */ }
      return listener.call(this, msg);
    }, options);
  };
})();
""".replace("STAGED", json.dumps(list(STAGED)))


class Probe:
    """The server's side of the latency, without any browser: when each staged event's row is
    visible in PostgreSQL (LISTEN on the hub's channel, then a read of the new rows) and when
    it arrives on each of ``streams`` plain SSE connections to ``base``. A thread and event
    loop of its own, so that the browser driver never delays a timestamp."""

    def __init__(
        self, *, base: str, key: str, database_url: str, streams: int, members: set[str]
    ) -> None:
        self.base = base
        self.members = members
        # Seconds a popping console's reads took (plain client): GET /v1/incidents/{id}/brief
        # (what draws the panel), then GET /v1/incidents/{id} (map, timeline, history).
        self.brief_reads: list[float] = []
        self.incident_reads: list[float] = []
        self._reads: set[asyncio.Task[None]] = set()
        self.key = key
        self.dsn = asyncpg_dsn(database_url)
        self.streams = streams
        self.db_seen: dict[tuple[str, int], float] = {}
        self.sse_seen: list[dict[tuple[str, int], float]] = [{} for _ in range(streams)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"bench probe not connected: {self.errors}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported with the figures, never hides them
            self.errors.append(repr(exc))
            self._ready.set()

    async def _main(self) -> None:
        connected: list[asyncio.Event] = [asyncio.Event() for _ in range(self.streams + 1)]
        tasks = [asyncio.create_task(self._stream(i, connected[i])) for i in range(self.streams)]
        tasks.append(asyncio.create_task(self._listen(connected[-1])))
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), 25)
        self._ready.set()
        await asyncio.to_thread(self._stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stream(self, index: int, connected: asyncio.Event) -> None:
        seen = self.sse_seen[index]
        url = f"{self.base}/v1/events/stream?types={PAGE_TYPES}"
        headers = {"Authorization": f"Bearer {self.key}"}
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith(": connected"):
                    connected.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind in STAGED:
                    at = time.time()
                    event = json.loads(line[6:])
                    if event.get("incident_id") is not None:
                        seen.setdefault((kind, int(event["incident_id"])), at)
                        operator = (event.get("data") or {}).get("operator")
                        if index == 0 and kind == "call_answered" and operator in self.members:
                            task = asyncio.create_task(
                                self._read(client, int(event["incident_id"]), headers)
                            )
                            self._reads.add(task)
                            task.add_done_callback(self._reads.discard)

    async def _read(self, client: httpx.AsyncClient, incident: int, headers: Any) -> None:
        started = time.monotonic()
        response = await client.get(f"{self.base}/v1/incidents/{incident}/brief", headers=headers)
        if response.status_code == 200:
            self.brief_reads.append(time.monotonic() - started)
        started = time.monotonic()
        response = await client.get(f"{self.base}/v1/incidents/{incident}", headers=headers)
        if response.status_code == 200:
            self.incident_reads.append(time.monotonic() - started)

    async def _listen(self, connected: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.dsn)
        wake = asyncio.Event()
        await conn.add_listener(CHANNEL, lambda *_: wake.set())
        # Rows can commit out of id order: read from a little behind the newest seen.
        newest: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM incident_events")
        recent: list[tuple[float, int]] = []
        connected.set()
        try:
            while True:
                await wake.wait()
                wake.clear()
                now = time.time()
                recent = [(t, i) for t, i in recent if now - t < 1]
                floor = min((i for _, i in recent), default=newest)
                rows = await conn.fetch(
                    "SELECT id, incident_id, kind FROM incident_events "
                    "WHERE id > $1 AND kind = ANY($2::text[])",
                    floor - 1,
                    list(STAGED),
                )
                at = time.time()
                for row in rows:
                    self.db_seen.setdefault((row["kind"], int(row["incident_id"])), at)
                    newest = max(newest, int(row["id"]))
                recent.append((at, newest))
                # At most one read per PROBE_READ_S: the bench must not load the database it
                # measures (a NOTIFY comes with nearly every commit).
                await asyncio.sleep(PROBE_READ_S)
        finally:
            await conn.close()


async def _sign_in(browser: Browser, base: str, username: str) -> Page:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(RECEIVED_SCRIPT)
    page = await context.new_page()
    await page.goto(f"{base}/console/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url(f"{base}/console/operator")
    await page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    await page.wait_for_selector("#stream-state[data-state='live']", timeout=30_000)
    return page


async def _first_load(browser: Browser, base: str, username: str) -> dict[str, Any]:
    """A fresh browser context (empty cache) opens the sign-in page and signs in, and the
    call-taker screen loads: every response, its bytes as sent (compressed), and the time from
    the sign-in to the screen being ready."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    # Counted from the sign-in page on: the style sheet and icon load there first.
    responses: list[Any] = []
    page.on("requestfinished", lambda request: responses.append(request))
    await page.goto(f"{base}/console/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    started = time.monotonic()
    await page.press("#password", "Enter")
    await page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    ready_s = time.monotonic() - started
    await page.wait_for_load_state("networkidle")
    files: dict[str, int] = {}
    total = 0
    for request in responses:
        if "/v1/events/stream" in request.url:
            continue
        sizes = await request.sizes()
        size = int(sizes["responseBodySize"]) + int(sizes["responseHeadersSize"])
        files[request.url.removeprefix(base)] = size
        total += size
    await context.close()
    return {
        "bytes": total,
        "requests": len(files),
        "files": files,
        "ready_s": round(ready_s, 3),
        "within_budget": total <= FIRST_LOAD_BUDGET_BYTES,
    }


async def _calls(database_url: str, uniqueids: list[str]) -> list[Call]:
    engine = create_async_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            return list(
                (await session.scalars(select(Call).where(Call.uniqueid.in_(uniqueids)))).all()
            )
    finally:
        await engine.dispose()


def _figures(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_s": q(values, 0.5),
        "p99_s": q(values, 0.99),
        "max_s": max(values) if values else None,
    }


def _latencies(
    calls: list[Call],
    consoles: list[Console],
    timings: list[list[dict[str, Any]]],
    received: list[list[dict[str, Any]]],
    probe: Probe | None,
) -> dict[str, Any]:
    """Per figure, the end to end latency (as before), and the same from the same start to each
    stage: row visible in PostgreSQL, read from a plain SSE stream, received by the page;
    besides, the page's own part (drawn minus received, per console)."""
    stages: dict[str, dict[str, list[float]]] = {
        f: {
            "db": [],
            "sse": [],
            "hub": [],
            "received": [],
            "opened": [],
            "drawn": [],
            "page_apply": [],
            "complete": [],
        }
        for f in ("queue_update", "screen_pop")
    }
    missed_queue = 0
    missed_pop = 0
    pops_expected = 0
    by_incident = {c.incident_id: c for c in calls if c.incident_id is not None}

    def firsts(marks: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
        first: dict[tuple[str, int], float] = {}
        for m in marks:
            if m.get("id") is None:
                continue
            first.setdefault((str(m["kind"]), int(m["id"])), float(m["at"]) / 1000)
        return first

    if probe is not None:
        for incident, call in by_incident.items():
            for figure, kind, start in (
                ("queue_update", "call_offered", call.offered_at),
                ("screen_pop", "call_answered", call.answered_at),
            ):
                if start is None:
                    continue
                t0 = start.timestamp()
                visible = probe.db_seen.get((kind, incident))
                if visible is not None:
                    stages[figure]["db"].append(visible - t0)
                for seen in probe.sse_seen:
                    if (kind, incident) in seen:
                        stages[figure]["sse"].append(seen[(kind, incident)] - t0)
                        if visible is not None:
                            stages[figure]["hub"].append(seen[(kind, incident)] - visible)
    for console, marks, got in zip(consoles, timings, received, strict=True):
        first = firsts(marks)
        arrived = firsts(got)
        for incident, call in by_incident.items():
            t0 = call.offered_at.timestamp()
            drawn = first.get(("queue", incident))
            recv = arrived.get(("call_offered", incident))
            if recv is not None:
                stages["queue_update"]["received"].append(recv - t0)
            if drawn is None:
                missed_queue += 1
            else:
                stages["queue_update"]["drawn"].append(drawn - t0)
                if recv is not None:
                    stages["queue_update"]["page_apply"].append(drawn - recv)
            if call.operator == console.member and call.answered_at is not None:
                t0 = call.answered_at.timestamp()
                pops_expected += 1
                popped = first.get(("pop", incident))
                opened = first.get(("pop_open", incident))
                complete = first.get(("pop_full", incident))
                if complete is not None:
                    stages["screen_pop"]["complete"].append(complete - t0)
                if opened is not None:
                    stages["screen_pop"]["opened"].append(opened - t0)
                recv = arrived.get(("call_answered", incident))
                if recv is not None:
                    stages["screen_pop"]["received"].append(recv - t0)
                if popped is None:
                    missed_pop += 1
                else:
                    stages["screen_pop"]["drawn"].append(popped - t0)
                    if recv is not None:
                        stages["screen_pop"]["page_apply"].append(popped - recv)

    def staged(figure: str) -> dict[str, Any]:
        return {name: _figures(values) for name, values in stages[figure].items() if values}

    return {
        "queue_update": {
            **_figures(stages["queue_update"]["drawn"]),
            "missed": missed_queue,
            "stages": staged("queue_update"),
        },
        "screen_pop": {
            **_figures(stages["screen_pop"]["drawn"]),
            "expected": pops_expected,
            "missed": missed_pop,
            "stages": staged("screen_pop"),
        },
    }


def _step(stack: BenchStack, args: argparse.Namespace, caller: str) -> Step:
    return run_step(
        stack.settings,
        stack.cdr,
        stack.workdir,
        scenario=stack.scenario,
        variant="siaga112",
        number=pbx.BENCH_AGI_NUMBER,
        caller=caller,
        rate=args.rate,
        seconds=args.seconds,
        hold_ms=int(args.hold * 1000),
    )


class ApiService(Service):
    """A second `siaga112 serve --api-only --call-control --no-worker` on its own port, for
    the consoles (docs/console.md)."""

    def command(self) -> list[str]:
        return [*super().command(), "--api-only", "--call-control", "--no-worker"]

    def start(self) -> None:
        saved = os.environ.get("SIAGA112_API__PORT")
        os.environ["SIAGA112_API__PORT"] = str(self.settings.api.port)
        try:
            super().start()
        finally:
            if saved is None:
                del os.environ["SIAGA112_API__PORT"]
            else:
                os.environ["SIAGA112_API__PORT"] = saved


def _hub_metrics(base: str) -> dict[str, float]:
    """The consoles' instance's event hub figures (its /metrics): events published, clients cut
    off, and how long it waited at holes in the id sequence."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("siaga112_live_") and " " in line:
            name, _, value = line.rpartition(" ")
            out[name.removeprefix("siaga112_")] = float(value)
    return out


@dataclass
class Surge:
    """What the consoles are measured against: the real calls of ``bench_stack`` (with a control
    surge first), or the synthetic feed (``--synthetic``)."""

    database_url: str
    workdir: Path
    base: str
    run: Callable[[], tuple[str, list[str], bool]]
    control: Callable[[], str] | None = None


async def _measure(surge: Surge, args: argparse.Namespace) -> dict[str, Any]:
    users, probe_key = await _users(surge.database_url)
    base = surge.base
    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("Debian's chromium is not installed (scripts/bootstrap.sh)")
    # The consoles of a centre run on the operators' own machines, not on the server: here they
    # share its cores, so the browser runs at the lowest CPU priority (a wrapper that execs
    # chromium under `nice -n 19`), and the service, Asterisk and SIPp come first.
    wrapper = surge.workdir / "chromium-nice"
    wrapper.write_text(
        f'#!/bin/sh\nexec nice -n {int(args.browser_nice)} {shlex.quote(executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    probe: Probe | None = None
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(wrapper), args=["--no-sandbox"])
        try:
            control: str | None = None
            if surge.control is not None:
                log(f"control: {args.rate:g} calls/s for {args.seconds:g} s, no console open")
                control = await asyncio.to_thread(surge.control)
            log("first load of the call-taker screen")
            first_load = await _first_load(browser, base, users[0][0])
            log(f"{CONSOLES} consoles signing in")
            consoles = [
                Console(username, member, await _sign_in(browser, base, username))
                for username, member in users
            ]
            requests: dict[str, int] = {}

            def count(request: Any) -> None:
                path = re.sub(r"/[0-9a-f-]{6,}|/\d+", "/{id}", urlsplit(request.url).path)
                key = f"{request.method} {path}"
                requests[key] = requests.get(key, 0) + 1

            for c in consoles:
                c.page.on("request", count)
            if not args.no_stages:
                probe = Probe(
                    base=base,
                    key=probe_key,
                    database_url=surge.database_url,
                    streams=CONSOLES,
                    members={member for _, member in users},
                )
                probe.start()
            log(f"calls: {args.rate:g}/s for {args.seconds:g} s, {CONSOLES} consoles open")
            load_before = os.getloadavg()
            step_line, uniqueids, sustained = await asyncio.to_thread(surge.run)
            load_after = os.getloadavg()
            await asyncio.sleep(args.settle)
            if probe is not None:
                probe.stop()
            hub_metrics = await asyncio.to_thread(_hub_metrics, base)
            timings = [await c.page.evaluate("window.siaga112Timings") for c in consoles]
            received = [await c.page.evaluate("window.__benchReceived || []") for c in consoles]
        finally:
            if probe is not None:
                probe.stop()
            await browser.close()
    calls = await _calls(surge.database_url, uniqueids)
    return {
        "first_load": first_load,
        "console_requests": dict(sorted(requests.items(), key=lambda kv: -kv[1])),
        "control": control,
        "step": step_line,
        "load_average": {
            "before_surge": [round(x, 2) for x in load_before],
            "after_surge": [round(x, 2) for x in load_after],
        },
        "probe_errors": probe.errors if probe is not None else [],
        "incident_read": _figures(probe.incident_reads) if probe is not None else None,
        "brief_read": _figures(probe.brief_reads) if probe is not None else None,
        "browser_nice": args.browser_nice,
        "hub_metrics": hub_metrics,
        "sustained": sustained,
        "calls": len(calls),
        "consoles": CONSOLES,
        "rate": args.rate,
        "seconds": args.seconds,
        **_latencies(calls, consoles, timings, received, probe),
    }


class PlainApiService(ApiService):
    """`siaga112 serve --api-only --no-worker`: the synthetic run has no Asterisk to control."""

    def command(self) -> list[str]:
        return [*Service.command(self), "--api-only", "--no-worker"]


def _feed(database_url: str, args: argparse.Namespace) -> tuple[str, list[str], bool]:
    """The synthetic surge: each call recorded as the AGI step records it (``record_incoming``,
    with its ``call_offered``), answered ``--queue-wait`` later by one of the bench queue's 32
    members and ended ``--hold`` after that (``apply_progress``, as the events worker writes
    them), at ``--rate`` for ``--seconds``. No Asterisk, no SIPp: what it measures starts at
    the rows."""

    async def main() -> tuple[str, list[str], bool]:
        engine = create_async_engine(database_url, pool_size=20, max_overflow=20)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        tag = secrets.token_hex(3)
        late: list[float] = []

        async def one(i: int) -> None:
            uid = f"synthetic-{tag}-{i}"
            number = f"0812{tag[:3]}{i:05d}"[:12]
            facts = CallFacts(
                uniqueid=uid,
                linkedid=uid,
                channel=f"PJSIP/synthetic-{i}",
                caller_number=number,
                caller_name=None,
                caller_e164=None,
                asserted_number=None,
                presentation="allowed",
                caller_id_available=True,
                callback_number=number,
                dialled_number="112",
                pai=None,
                pani=None,
                geolocation=None,
            )
            offered = datetime.now(UTC)
            async with sessions() as session:
                await record_incoming(session=session, facts=facts, at=offered)
                await session.commit()
            await asyncio.sleep(args.queue_wait)
            member = f"bench-op-{i % 32 + 1:02d}"
            answered = datetime.now(UTC)
            for state in ("answered", "ended"):
                ended = state == "ended"
                if ended:
                    await asyncio.sleep(args.hold)
                async with sessions() as session:
                    await apply_progress(
                        session=session,
                        updates=[
                            CallProgress(
                                uniqueid=uid,
                                state=state,
                                enqueued_at=offered,
                                ringing_at=None,
                                answered_at=answered,
                                ended_at=datetime.now(UTC) if ended else None,
                                queue="bench",
                                operator=member,
                                hangup_cause="16" if ended else None,
                                outcome="answered" if ended else None,
                            )
                        ],
                    )
                    await session.commit()

        total = int(args.rate * args.seconds)
        started = time.monotonic()
        tasks = []
        for i in range(total):
            due = started + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            tasks.append(asyncio.create_task(one(i)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()
        failed = [r for r in results if isinstance(r, BaseException)]
        wall = time.monotonic() - started
        line = (
            f"synthetic {args.rate:g}/s x {args.seconds:g}s: {total} calls fed in {wall:.1f} s, "
            f"{len(failed)} failed"
            + (f" ({failed[0]!r})" if failed else "")
            + (f", feed late by up to {max(late) * 1000:.0f} ms" if late else "")
        )
        return line, [f"synthetic-{tag}-{i}" for i in range(total)], not failed

    return asyncio.run(main())


def _feed_apart(database_url: str, args: argparse.Namespace) -> tuple[str, list[str], bool]:
    """The feed in a process of its own: its work must not delay the probe's timestamps."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_feed, database_url, args).result()


def run_synthetic(args: argparse.Namespace) -> dict[str, Any]:
    """The consoles against the synthetic feed: a bench database of its own and one `siaga112
    serve --api-only` (no sandbox, no lock needed)."""
    base = Settings()
    database_url = args.database_url or make_url(base.database_url_str).set(
        database="siaga112_bench_console_synthetic"
    ).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="siaga112-console-synthetic-"))
    log(f"run directory {workdir}; database: drop, create, migrate")
    asyncio.run(drop_database(database_url))
    upgrade(database_url)
    settings = base.model_copy(
        update={
            "database_url": database_url,
            "api": base.api.model_copy(update={"port": args.api_port}),
        }
    )
    api = PlainApiService(settings, database_url, workdir / "siaga112-api.log")
    api.start()
    try:
        surge = Surge(
            database_url=database_url,
            workdir=workdir,
            base=api.base,
            run=lambda: _feed_apart(database_url, args),
        )
        figures = asyncio.run(_measure(surge, args))
    finally:
        api.stop()
    figures["separate_api"] = True
    return {
        "command": " ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "bench.console", *sys.argv[1:]]
        ),
        "run_directory": str(workdir),
        "synthetic": True,
        **figures,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.synthetic:
        return run_synthetic(args)
    with bench_stack(
        module="bench.console",
        database_url=args.database_url,
        default_database="siaga112_bench_console",
        wait_busy_s=args.wait_busy,
        keep_cdr=args.keep_cdr,
    ) as stack:
        api: Service | None = None
        if not args.shared_serve:
            settings = stack.settings.model_copy(
                update={"api": stack.settings.api.model_copy(update={"port": args.api_port})}
            )
            api = ApiService(settings, stack.database_url, stack.workdir / "siaga112-api.log")
            log(f"siaga112 serve --api-only for the consoles on port {args.api_port}")
            api.start()
        try:

            def real(caller: str) -> Callable[[], tuple[str, list[str], bool]]:
                def go() -> tuple[str, list[str], bool]:
                    step = _step(stack, args, caller)
                    return step.line().strip(), step.uniqueids, step.sustained

                return go

            surge = Surge(
                database_url=stack.database_url,
                workdir=stack.workdir,
                base=(api or stack.service).base,
                run=real(step_caller(1, 1)),
                control=None if args.no_control else (lambda: real(step_caller(1, 0))()[0]),
            )
            figures = asyncio.run(_measure(surge, args))
        finally:
            if api is not None:
                api.stop()
        figures["separate_api"] = not args.shared_serve
        stack.result.update(figures)
    return stack.result


def report(result: dict[str, Any]) -> str:
    fl = result["first_load"]
    qu, po = result["queue_update"], result["screen_pop"]

    def verdict(p99: float | None) -> str:
        return "within 1 s" if p99 is not None and p99 * 1000 <= BUDGET_MS else "OVER 1 s"

    return "\n".join(
        [
            f"console bench: {result['consoles']} consoles, {result['rate']:g} calls/s for "
            f"{result['seconds']:g} s ({result['calls']} calls in the database), consoles on "
            + (
                "their own `serve --api-only --call-control`"
                if result["separate_api"]
                else "the serve of AGI"
            )
            + f"; load average before/after the surge {result['load_average']['before_surge']}"
            f" / {result['load_average']['after_surge']}",
            f"  without consoles: {result['control'] or '(not run: --no-control)'}",
            f"  with consoles:    {result['step']}",
            "  requests of the consoles during the surge: "
            + ", ".join(f"{k} x{v}" for k, v in result["console_requests"].items()),
            f"  first load of /console/operator: {fl['bytes'] / 1024:.1f} KiB over the wire in "
            f"{fl['requests']} responses, ready after {fl['ready_s'] * 1000:.0f} ms -> "
            + ("within 300 KB" if fl["within_budget"] else "OVER 300 KB"),
            f"  queue update after the call is offered: p50 {ms(qu['p50_s'])} p99 "
            f"{ms(qu['p99_s'])} max {ms(qu['max_s'])} (n={qu['n']}, missed {qu['missed']}) -> "
            + verdict(qu["p99_s"]),
            f"  screen pop after the answer: p50 {ms(po['p50_s'])} p99 {ms(po['p99_s'])} max "
            f"{ms(po['max_s'])} (n={po['n']} of {po['expected']}, missed {po['missed']}) -> "
            + verdict(po["p99_s"]),
            *stage_lines(result),
        ]
    )


STAGE_NAMES = {
    "db": "row visible in PostgreSQL",
    "sse": "read from the event stream (plain client)",
    "hub": "the service's own part (read - visible)",
    "received": "received by the page",
    "opened": "opened from the event (number, id)",
    "drawn": "drawn by the page",
    "page_apply": "the page's own part (drawn - received)",
    "complete": "complete: map, timeline, caller history",
}


def stage_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for figure, start in (("queue_update", "offered"), ("screen_pop", "answered")):
        stages = result[figure].get("stages") or {}
        if not stages:
            continue
        lines.append(f"  {figure.replace('_', ' ')}, from the call {start}, p50 / p99 / max:")
        for name, label in STAGE_NAMES.items():
            if name in stages:
                f = stages[name]
                lines.append(
                    f"    {label:<42} {ms(f['p50_s']):>10} {ms(f['p99_s']):>10} "
                    f"{ms(f['max_s']):>10} (n={f['n']})"
                )
    for key, label in (
        ("brief_read", "GET /v1/incidents/{id}/brief on a pop"),
        ("incident_read", "then GET /v1/incidents/{id}"),
    ):
        read = result.get(key)
        if read and read["n"]:
            lines.append(
                f"  {label} (plain client): p50 {ms(read['p50_s'])} "
                f"p99 {ms(read['p99_s'])} (n={read['n']})"
            )
    hub = result.get("hub_metrics") or {}
    if hub:
        lines.append(
            "  event hub of the consoles' instance: "
            + ", ".join(f"{k} {v:g}" for k, v in sorted(hub.items()))
        )
    if result.get("probe_errors"):
        lines.append(f"  probe errors: {result['probe_errors']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    p.add_argument("--rate", type=float, default=25.0, help="calls per second (default 25)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the surge")
    p.add_argument("--hold", type=float, default=2.0, help="seconds a caller stays on the line")
    p.add_argument("--settle", type=float, default=5.0, help="wait after the surge")
    p.add_argument(
        "--shared-serve",
        action="store_true",
        help="the consoles use the serve that answers the AGI requests, not a `siaga112 serve "
        "--api-only --call-control` of their own (the default, docs/console.md)",
    )
    p.add_argument(
        "--no-control", action="store_true", help="no surge without consoles first (shorter)"
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="no Asterisk: calls recorded, answered and ended straight in the database as the "
        "AGI step and the events worker write them; the consoles on a `serve --api-only`",
    )
    p.add_argument(
        "--browser-nice", type=int, default=19, help="chromium's nice value (default 19)"
    )
    p.add_argument(
        "--queue-wait", type=float, default=1.0, help="--synthetic: seconds before the answer"
    )
    p.add_argument(
        "--no-stages",
        action="store_true",
        help="no timing of the stages (no LISTEN connection, no plain event-stream readers)",
    )
    p.add_argument(
        "--api-port",
        type=int,
        default=8117,
        help="the consoles' serve's port (default 8117: 8113 and 8114 are the workers' metrics)",
    )
    p.add_argument("--wait-busy", type=float, default=180.0, help="wait for a busy sandbox")
    p.add_argument("--database-url", default=None, help="default: .../siaga112_bench_console")
    p.add_argument("--keep-cdr", action="store_true", help="leave the bench's CDR lines")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    return bench_main(args, run, report)


if __name__ == "__main__":
    raise SystemExit(main())
