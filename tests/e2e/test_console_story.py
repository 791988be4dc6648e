"""Issue 10's story in Debian's chromium against the real Asterisk, keyboard only: a caller with
a GPS fix (PIDF-LO) waits in the queue and shows on the call-taker screen; the operator joins
the queue, the operator's SIPp phone answers, the incident pops; the operator confirms the
location on the map, classifies, dispatches to two agencies; an agency acknowledges on its
page; the incident is closed.

The console is served by siaga112 in this event loop (uvicorn, the event hub, real call
control over AMI), so the browser is driven with Playwright's async API here; the guard of
tests/browser applies: nothing outside 127.0.0.1, no console errors, no error responses."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    async_playwright,
    expect,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.accounts.service import create_user
from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.calls.models import Call
from siaga112.db.session import asyncpg_dsn
from siaga112.events.hub import EventHub
from siaga112.metrics import Metrics
from siaga112_sandbox.procs import free_port
from siaga112_sandbox.sipp import SippOperator, run_caller
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import wait_for_call

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
EXTENSION = "7410"
PHONE_PORT = 5086
PASSWORD = "sandi-cerita-112"


@dataclass
class Guard:
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    async def route(self, route: Route, request: Request) -> None:
        if urlsplit(request.url).hostname == "127.0.0.1" or request.url.startswith("data:"):
            await route.continue_()
        else:
            self.outside.append(request.url)
            await route.abort()

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    async def watch(self, page: Page) -> Page:
        await page.context.route("**/*", self.route)
        page.on("console", self.console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("response", self.response)
        page.set_default_timeout(15_000)
        return page

    def check(self) -> None:
        assert self.outside == []
        assert self.errors == []
        assert self.failed == []


@pytest.fixture
async def console_url(stack: Stack, engine: AsyncEngine) -> AsyncIterator[str]:
    """siaga112's API and console on a free port, with the event hub and real call control."""
    assert stack.telephony is not None
    hub = EventHub(
        dsn=asyncpg_dsn(stack.settings.database_url_str),
        sessionmaker=stack.sessionmaker,
        metrics=Metrics(),
    )
    app = create_app(
        stack.settings,
        engine=engine,
        sessionmaker=stack.sessionmaker,
        event_hub=hub,
        call_control=stack.telephony.control,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    await hub.start()
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await hub.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def _sign_in(page: Page, url: str, username: str) -> None:
    await page.goto(f"{url}/console/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_load_state("load")


async def test_call_to_closure_in_the_browser_with_the_keyboard(
    stack: Stack, api: httpx.AsyncClient, console_url: str, browser: Browser
) -> None:
    r = await api.post("/v1/operators", json={"extension": EXTENSION, "name": "Rina Marlina"})
    assert r.status_code == 201, r.text
    sip_password = r.json()["sip"]["password"]
    r = await api.put("/v1/dispatch-defaults/kebakaran", json={"agencies": ["damkar", "dinkes"]})
    assert r.status_code == 200, r.text
    async with stack.sessionmaker() as session:
        for username, role, ext, agency in (
            ("story-op", Role.OPERATOR, EXTENSION, None),
            ("story-damkar", Role.AGENCY, None, "damkar"),
        ):
            await create_user(
                session=session,
                username=username,
                display_name=username,
                role=role,
                actor=system_actor("tests"),
                password=PASSWORD,
                extension=ext,
                agency_code=agency,
            )
        await session.commit()

    guard = Guard()
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await guard.watch(await context.new_page())
    phone = SippOperator(stack.settings, EXTENSION, port=PHONE_PORT, password=sip_password)
    caller: asyncio.Task[object] | None = None
    try:
        await _sign_in(page, console_url, "story-op")
        await expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
        await expect(page.locator("#my-state")).to_have_attribute("data-state", "logged_out")

        # A caller with a GPS fix waits: nobody is in the queue yet.
        number = f"+62812{random.randrange(10**6, 10**7)}"
        caller = asyncio.create_task(
            asyncio.to_thread(
                run_caller,
                stack.settings,
                "caller-112-pidf.xml",
                caller=number,
                hold_ms=20_000,
                timeout=60,
            )
        )
        waiting = await wait_for_call(stack, Call.asserted_number == number, states={"queued"})
        row = page.locator(f"#queue li[data-call-id='{waiting.id}']")
        await expect(row).to_contain_text(number)
        # Time in queue ticks on the screen.
        await expect(row.locator(".wait")).to_have_text(re.compile(r"^0:0[2-9]$"), timeout=20_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "operator-queue.png"))

        # The operator's phone registers; J joins the queue; the phone answers; the screen pops.
        await asyncio.to_thread(phone.start)
        await page.keyboard.press("j")
        await expect(page.locator("#inc-title")).to_have_text(
            f"Insiden #{waiting.incident_id}", timeout=20_000
        )
        await expect(page.locator("#queue li")).to_have_count(0)
        await expect(page.locator("#inc-caller")).to_contain_text(number)

        # The PIDF-LO fix on the map: L, 1 confirms it.
        await expect(page.locator("#locations li")).not_to_have_count(0, timeout=20_000)
        await page.keyboard.press("l")
        await page.keyboard.press("1")
        await expect(page.locator("#locations li.confirmed")).to_have_count(1)
        await page.keyboard.press("k")
        await page.keyboard.press("1")
        await expect(page.locator("#inc-classification")).to_have_value("emergency")
        await page.keyboard.press("c")
        await page.keyboard.press("1")
        await expect(page.locator("#agency-dinkes")).to_be_checked()
        # The address, and the landmark the caller names in its own field (Tab, then Enter).
        await page.keyboard.press("a")
        await page.keyboard.type("Jl. Raya Jatiasih No. 10")
        await page.keyboard.press("Tab")
        await page.keyboard.type("Seberang Masjid Al-Ikhlas")
        await page.keyboard.press("Enter")
        await expect(page.locator("#inc-landmark")).to_have_value("Seberang Masjid Al-Ikhlas")
        await page.keyboard.press("d")
        await expect(page.locator("#dispatch-list li")).to_have_count(2)
        await page.screenshot(path=str(SCREENSHOTS / "operator-story.png"))

        agency_guard = Guard()
        agency_context = await browser.new_context()
        try:
            agency_page = await agency_guard.watch(await agency_context.new_page())
            await _sign_in(agency_page, console_url, "story-damkar")
            card = agency_page.locator(f"article[data-incident='{waiting.incident_id}']")
            await expect(card.locator(".landmark")).to_contain_text("Seberang Masjid Al-Ikhlas")
            await card.locator("button[data-action=acknowledged]").focus()
            await agency_page.keyboard.press("Enter")
            await expect(card).to_have_attribute("data-status", "acknowledged")
            agency_guard.check()
        finally:
            await agency_context.close()
        await expect(page.locator("#dispatch-list li[data-agency=damkar]")).to_have_attribute(
            "data-status", "acknowledged"
        )

        await page.keyboard.press("x")
        await page.keyboard.press("Enter")
        await expect(page.locator("#inc-status")).to_have_attribute("data-status", "closed")
        guard.check()
    finally:
        await context.close()
        with contextlib.suppress(Exception):
            await api.post(f"/v1/operators/{EXTENSION}/logout")
        await asyncio.to_thread(phone.stop)
        if caller is not None:
            await caller
        await api.delete(f"/v1/operators/{EXTENSION}")

    incident = (await api.get(f"/v1/incidents/{waiting.incident_id}")).json()
    assert incident["status"] == "closed"
    assert incident["classification"] == "emergency"
    assert incident["landmark"] == "Seberang Masjid Al-Ikhlas"
    confirmed = [loc for loc in incident["locations"] if loc["confirmed"]]
    assert [loc["source"] for loc in confirmed] == ["pidf_lo"]
    kinds = [e["kind"] for e in incident["timeline"]]
    assert "call_answered" in kinds
    assert kinds.count("dispatch_created") >= 1
