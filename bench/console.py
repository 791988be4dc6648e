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
     drawn on the console of the member that answered;
   p50/p99/max, and the calls each console missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select, update
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
from siaga112.auth.service import system_actor
from siaga112.calls.models import Call
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


async def _users(database_url: str) -> list[tuple[str, str]]:
    """Console operators linked to the bench queue's first members. The link is written
    directly: bench members are named ``bench-op-NN``, not numeric extensions as
    `siaga112 user create` requires of a centre's operators."""
    engine = create_async_engine(database_url)
    out = []
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
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
    return out


async def _sign_in(browser: Browser, base: str, username: str) -> Page:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
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


def _latencies(
    calls: list[Call], consoles: list[Console], timings: list[list[dict[str, Any]]]
) -> dict[str, Any]:
    queue: list[float] = []
    pop: list[float] = []
    missed_queue = 0
    missed_pop = 0
    pops_expected = 0
    by_incident = {c.incident_id: c for c in calls if c.incident_id is not None}
    for console, marks in zip(consoles, timings, strict=True):
        first: dict[tuple[str, int], float] = {}
        for m in marks:
            key = (str(m["kind"]), int(m["id"]))
            first.setdefault(key, float(m["at"]) / 1000)
        for incident, call in by_incident.items():
            seen = first.get(("queue", incident))
            if seen is None:
                missed_queue += 1
            else:
                queue.append(seen - call.offered_at.timestamp())
            if call.operator == console.member and call.answered_at is not None:
                pops_expected += 1
                popped = first.get(("pop", incident))
                if popped is None:
                    missed_pop += 1
                else:
                    pop.append(popped - call.answered_at.timestamp())

    def figures(values: list[float]) -> dict[str, Any]:
        return {
            "n": len(values),
            "p50_s": q(values, 0.5),
            "p99_s": q(values, 0.99),
            "max_s": max(values) if values else None,
        }

    return {
        "queue_update": {**figures(queue), "missed": missed_queue},
        "screen_pop": {**figures(pop), "expected": pops_expected, "missed": missed_pop},
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
    """A second `siaga112 serve --api-only --no-worker` on its own port, for the consoles."""

    def command(self) -> list[str]:
        return [*super().command(), "--api-only", "--no-worker"]

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


async def _measure(
    stack: BenchStack, args: argparse.Namespace, api: Service | None
) -> dict[str, Any]:
    users = await _users(stack.database_url)
    base = (api or stack.service).base
    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("Debian's chromium is not installed (scripts/bootstrap.sh)")
    # The consoles of a centre run on the operators' own machines, not on the server: here they
    # share its cores, so the browser runs at the lowest CPU priority (a wrapper that execs
    # chromium under `nice -n 19`), and the service, Asterisk and SIPp come first.
    wrapper = stack.workdir / "chromium-nice"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n 19 {shlex.quote(executable)} "$@"\n')
    wrapper.chmod(0o755)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(wrapper), args=["--no-sandbox"])
        try:
            log(f"control: {args.rate:g} calls/s for {args.seconds:g} s, no console open")
            control = await asyncio.to_thread(_step, stack, args, step_caller(1, 0))
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
            log(f"calls: {args.rate:g}/s for {args.seconds:g} s, {CONSOLES} consoles open")
            step = await asyncio.to_thread(_step, stack, args, step_caller(1, 1))
            await asyncio.sleep(args.settle)
            timings = [await c.page.evaluate("window.siaga112Timings") for c in consoles]
        finally:
            await browser.close()
    calls = await _calls(stack.database_url, step.uniqueids)
    return {
        "first_load": first_load,
        "console_requests": dict(sorted(requests.items(), key=lambda kv: -kv[1])),
        "control": control.line().strip(),
        "step": step.line().strip(),
        "sustained": step.sustained,
        "calls": len(calls),
        "consoles": CONSOLES,
        "rate": args.rate,
        "seconds": args.seconds,
        **_latencies(calls, consoles, timings),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_stack(
        module="bench.console",
        database_url=args.database_url,
        default_database="siaga112_bench_console",
        wait_busy_s=args.wait_busy,
        keep_cdr=args.keep_cdr,
    ) as stack:
        api: Service | None = None
        if args.separate_api:
            settings = stack.settings.model_copy(
                update={"api": stack.settings.api.model_copy(update={"port": args.api_port})}
            )
            api = ApiService(settings, stack.database_url, stack.workdir / "siaga112-api.log")
            log(f"siaga112 serve --api-only for the consoles on port {args.api_port}")
            api.start()
        try:
            figures = asyncio.run(_measure(stack, args, api))
        finally:
            if api is not None:
                api.stop()
        figures["separate_api"] = args.separate_api
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
            + ("a separate `serve --api-only`" if result["separate_api"] else "the serve of AGI"),
            f"  without consoles: {result['control']}",
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
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    p.add_argument("--rate", type=float, default=25.0, help="calls per second (default 25)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the surge")
    p.add_argument("--hold", type=float, default=2.0, help="seconds a caller stays on the line")
    p.add_argument("--settle", type=float, default=5.0, help="wait after the surge")
    p.add_argument(
        "--separate-api",
        action="store_true",
        help="the consoles use a second `siaga112 serve --api-only` (its own event loop and "
        "event hub), not the serve that answers the AGI requests",
    )
    p.add_argument("--api-port", type=int, default=8114, help="that second serve's port")
    p.add_argument("--wait-busy", type=float, default=180.0, help="wait for a busy sandbox")
    p.add_argument("--database-url", default=None, help="default: .../siaga112_bench_console")
    p.add_argument("--keep-cdr", action="store_true", help="leave the bench's CDR lines")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    return bench_main(args, run, report)


if __name__ == "__main__":
    raise SystemExit(main())
