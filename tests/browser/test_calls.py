"""Calls on the call-taker screen, recorded through siaga112's own call recorder (what its AGI
server and AMI tracker write; the real-Asterisk version of the story is tests/e2e): the live
queue with "tanpa nomor", the screen pop when the operator's own extension answers, a SIP
display name full of markup rendered inert, and the abandoned-call worklist."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.calls.recorder import CallFacts, CallProgress, apply_progress, record_incoming
from tests.browser.conftest import Guard, Server, add_operator, off_loop, screenshot, sign_in
from tests.conftest import engine_for

T = TypeVar("T")
HOSTILE_NAME = '<img src="/console/pwned.png" onerror="window.__pwned=1"><script>x()</script>'


def _facts(number: str | None, name: str | None) -> CallFacts:
    uid = f"{random.randrange(10**9, 10**10)}.{random.randrange(1000)}"
    return CallFacts(
        uniqueid=uid,
        linkedid=uid,
        channel=f"PJSIP/carrier-{uuid.uuid4().hex[:8]}",
        caller_number=number,
        caller_name=name,
        caller_e164=number,
        asserted_number=number,
        presentation="allowed_not_screened" if number else "prohib",
        caller_id_available=number is not None,
        callback_number=number,
        dialled_number="112",
        pai=f"<sip:{number}@carrier.invalid>" if number else None,
        pani=None,
        geolocation=None,
    )


def _run(server: Server, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        async for engine in engine_for(server.database_url):
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                out = await fn(session)
                await session.commit()
                return out
        raise AssertionError("unreachable")

    return off_loop(lambda: asyncio.run(run()))


def offer(server: Server, number: str | None, name: str | None = None) -> tuple[str, int]:
    facts = _facts(number, name)

    async def fn(session: AsyncSession) -> int:
        recorded = await record_incoming(session=session, facts=facts, at=datetime.now(UTC))
        await apply_progress(
            session=session,
            updates=[
                CallProgress(
                    uniqueid=facts.uniqueid,
                    state="queued",
                    enqueued_at=datetime.now(UTC),
                    ringing_at=None,
                    answered_at=None,
                    ended_at=None,
                    queue="emergency",
                    operator=None,
                    hangup_cause=None,
                    outcome=None,
                )
            ],
        )
        return recorded.incident_id

    return facts.uniqueid, _run(server, fn)


def progress(server: Server, uniqueid: str, state: str, operator: str | None = None) -> None:
    now = datetime.now(UTC)

    async def fn(session: AsyncSession) -> None:
        await apply_progress(
            session=session,
            updates=[
                CallProgress(
                    uniqueid=uniqueid,
                    state=state,
                    enqueued_at=now,
                    ringing_at=now,
                    answered_at=now if state == "answered" else None,
                    ended_at=now if state in ("ended", "abandoned") else None,
                    queue="emergency",
                    operator=operator,
                    hangup_cause=None,
                    outcome="abandoned" if state == "abandoned" else None,
                )
            ],
        )

    _run(server, fn)


def test_queue_then_screen_pop_with_a_hostile_display_name(page: Page, server: Server) -> None:
    add_operator(server, "op-pop", "7103", "Agus Salim")
    sign_in(page, server, "op-pop")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")

    anonymous, _ = offer(server, None)
    number = f"+62813{random.randrange(10**6, 10**7)}"
    uid, incident = offer(server, number, HOSTILE_NAME)
    expect(page.locator("#queue li")).to_have_count(2)
    expect(page.locator("#queue")).to_contain_text("tanpa nomor")
    expect(page.locator("#queue")).to_contain_text(number)
    screenshot(page, "operator-queue-live")

    # Another operator answers the anonymous caller: no pop here.
    progress(server, anonymous, "answered", operator="7999")
    expect(page.locator("#queue li")).to_have_count(1)
    expect(page.locator("#incident")).to_be_hidden()
    # This operator's own extension answers: the incident opens by itself.
    progress(server, uid, "answered", operator="7103")
    expect(page.locator("#inc-title")).to_have_text(f"Insiden #{incident}")
    expect(page.locator("#inc-caller")).to_contain_text(HOSTILE_NAME)
    assert page.locator("#incident img, #incident script").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#timeline")).to_contain_text("dijawab")
    # The brief drew the panel; the full read that follows brings the caller's history.
    expect(page.locator("#inc-history")).to_contain_text("1 panggilan")
    marks = page.evaluate("window.siaga112Timings.map((m) => m.kind)")
    assert {"pop_open", "pop", "pop_full"} <= set(marks)


def test_abandoned_caller_is_on_the_worklist(page: Page, server: Server, guard: Guard) -> None:
    add_operator(server, "op-cb", "7104", "Wati")
    number = f"+62815{random.randrange(10**6, 10**7)}"
    uid, _ = offer(server, number)
    progress(server, uid, "abandoned")
    sign_in(page, server, "op-cb")
    item = page.locator(f"#callbacks li:has-text('{number}')")
    expect(item).to_contain_text("ditinggalkan")
    screenshot(page, "operator-worklist")
    # One click (or Tab + Enter) starts the callback; this server has no telephony: said so.
    guard.allow(503, f"/v1/callbacks/{item.get_attribute('data-call-id')}/call")
    item.locator("button.callback").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_have_attribute("data-kind", "error")
    expect(page.locator("#toast")).to_contain_text("Sentral telepon tidak terjangkau")


HOSTILE_NOTE = '<img src="/console/pwned.png" onerror="window.__pwnedNote=1">Api di dapur'


def test_the_open_incident_follows_its_events_without_reading_it_again(
    page: Page, server: Server
) -> None:
    """Once popped, the incident is kept current by its own events: a note written elsewhere,
    a changed address (with the kecamatan derived from it), the call's end, a location
    confirmed elsewhere are drawn from the events; a new fix reads the incident's audited
    location list and a status change its brief (the statuses allowed next); the whole
    incident (GET /v1/incidents/{id}) is read once, when it popped."""
    add_operator(server, "op-live", "7106", "Rina Marlina")
    sign_in(page, server, "op-live")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    number = f"+62817{random.randrange(10**6, 10**7)}"
    uid, incident = offer(server, number)
    reads: list[str] = []
    page.on(
        "request",
        lambda r: reads.append(urlsplit(r.url).path) if r.method == "GET" else None,
    )
    full = f"/v1/incidents/{incident}"

    progress(server, uid, "answered", operator="7106")
    expect(page.locator("#inc-title")).to_have_text(f"Insiden #{incident}")
    expect(page.locator("#inc-history")).to_contain_text("1 panggilan")  # the full read
    page.wait_for_function("window.siaga112Timings.some((m) => m.kind === 'pop_full')")
    expect(page.locator("#hangup")).to_be_enabled()  # the call is live
    assert reads.count(full) == 1

    with server.api() as api:
        r = api.post(f"{full}/notes", json={"text": HOSTILE_NOTE})
        assert r.status_code == 201, r.text
        r = api.patch(full, json={"address": "Jl. Ahmad Yani No. 1, Kec. Bekasi Selatan"})
        assert r.status_code == 200, r.text
    progress(server, uid, "ended")
    expect(page.locator("#timeline li[data-kind=note]")).to_contain_text(HOSTILE_NOTE)
    assert page.locator("#timeline img").count() == 0
    assert page.evaluate("window.__pwnedNote") is None
    expect(page.locator("#inc-address")).to_have_value("Jl. Ahmad Yani No. 1, Kec. Bekasi Selatan")
    expect(page.locator("#inc-kecamatan")).to_have_text("Bekasi Selatan")
    expect(page.locator("#timeline li[data-kind=call_ended]")).to_have_count(1)
    expect(page.locator("#hangup")).to_be_disabled()  # the call's end, from its event

    # A new fix: its audited location list is read, not the whole incident.
    with (
        page.expect_response(lambda r: urlsplit(r.url).path == f"{full}/locations"),
        server.api() as api,
    ):
        r = api.post(
            f"{full}/locations",
            json={"lat": -6.2412, "lon": 106.9921, "radius_m": 35.0, "confirm": False},
        )
        assert r.status_code == 201, r.text
        location = r.json()["id"]
    expect(page.locator("#locations li")).to_have_count(1)
    expect(page.locator("#locations li.confirmed")).to_have_count(0)
    # Confirmed elsewhere: drawn from its event.
    with server.api() as api:
        r = api.post(f"/v1/locations/{location}/confirm")
        assert r.status_code == 200, r.text
    expect(page.locator("#locations li.confirmed")).to_have_count(1)

    # Dispatched elsewhere: the brief brings the statuses allowed next, so closing from this
    # screen resolves first (a dispatched incident cannot be closed directly).
    with (
        page.expect_response(lambda r: urlsplit(r.url).path == f"{full}/brief"),
        server.api() as api,
    ):
        r = api.patch(full, json={"status": "dispatched"})
        assert r.status_code == 200, r.text
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "dispatched")
    page.keyboard.press("x")
    expect(page.locator("#chooser")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "closed")
    expect(page.locator("#timeline li[data-kind=status_changed]")).to_have_count(3)

    page.wait_for_timeout(1200)  # past the page's 500 ms window for a read an event asks for
    assert reads.count(full) == 1, reads
