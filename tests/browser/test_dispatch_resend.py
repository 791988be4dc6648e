"""Resending a dispatch nobody acknowledged, from the call-taker screen: an overdue dispatch's
"Kirim ulang" stands out, a click resends one, the keyboard (U, then its number) another,
overdue first; each shows as resent, the overdue mark re-arms from the resend, the agency's
own page highlights it, and once acknowledged it can no longer be resent."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update

from siaga112.auth.roles import Role
from siaga112.dispatch.models import Dispatch
from tests.browser.conftest import (
    Guard,
    Server,
    add_operator,
    add_user,
    off_loop,
    screenshot,
    sign_in,
)
from tests.conftest import engine_for


def _sent_ago(server: Server, dispatch_id: int, seconds: float) -> None:
    """As if the dispatch had been sent `seconds` ago (past the acknowledgement timeout)."""

    async def run() -> None:
        async for engine in engine_for(server.database_url):
            async with engine.begin() as conn:
                await conn.execute(
                    update(Dispatch)
                    .where(Dispatch.id == dispatch_id)
                    .values(created_at=Dispatch.created_at - timedelta(seconds=seconds))
                )

    off_loop(lambda: asyncio.run(run()))


def test_unacknowledged_dispatches_are_resent_by_click_and_by_keyboard(
    page: Page, server: Server, browser: Browser
) -> None:
    add_operator(server, "op-resend", "7105", "Rina Wulandari")
    add_user(server, "bpbd-staff", Role.AGENCY, name="Pusdalops BPBD", agency="bpbd")
    with server.api() as api:
        r = api.post(
            "/v1/incidents",
            json={"channel": "radio", "category": "pohon_tumbang", "priority": 2},
        )
        assert r.status_code == 201, r.text
        incident = r.json()["id"]
        r = api.post(f"/v1/incidents/{incident}/dispatches", json={"agencies": ["bpbd", "polri"]})
        assert r.status_code == 201, r.text
        ids = {d["agency_code"]: d["id"] for d in r.json()["items"]}
    _sent_ago(server, ids["bpbd"], 200)  # the default acknowledgement timeout is 120 s

    sign_in(page, server, "op-resend")
    page.goto(f"{server.url}/console/operator#incident-{incident}")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    bpbd = page.locator("#dispatch-list li[data-agency=bpbd]")
    polri = page.locator("#dispatch-list li[data-agency=polri]")
    expect(bpbd).to_have_class("overdue")
    expect(bpbd.locator("button.resend.urgent")).to_be_visible()
    expect(polri.locator("button.resend")).to_be_visible()
    expect(polri.locator("button.resend.urgent")).to_have_count(0)
    screenshot(page, "operator-dispatch-overdue")

    # By mouse: the one not yet overdue.
    polri.locator("button.resend").dblclick()  # a double click resends once
    expect(page.locator("#toast")).to_contain_text("Dikirim ulang ke")
    expect(polri.locator(".badge.resent")).to_contain_text("dikirim ulang 1")

    # By keyboard: U lists the waiting ones, overdue first; 1 resends it.
    page.keyboard.press("u")
    expect(page.locator("#chooser")).to_be_visible()
    expect(page.locator("#chooser-list li").first).to_contain_text("TERLAMBAT")
    expect(page.locator("#chooser-list li")).to_have_count(2)
    page.keyboard.press("1")
    expect(bpbd.locator(".badge.resent")).to_contain_text("dikirim ulang 1")
    # The overdue alert re-arms from the resend; the timer still counts from the first send.
    expect(bpbd).not_to_have_class("overdue")
    expect(bpbd.locator(".timer")).to_contain_text("menunggu konfirmasi 3:")
    expect(page.locator("#timeline")).to_contain_text("dikirim ulang ke instansi")

    # The supervisor's wallboard counts overdue the same way: both wait, neither is overdue.
    add_user(server, "spv-resend", Role.SUPERVISOR, name="Pak Hendra")
    board = browser.new_context(viewport={"width": 1600, "height": 900})
    try:
        board_guard = Guard()
        board_page = board_guard.watch(board.new_page())
        sign_in(board_page, server, "spv-resend")
        expect(board_page).to_have_url(f"{server.url}/console/wallboard")
        expect(board_page.locator("body")).to_have_attribute("data-ready", "1")
        expect(board_page.locator("#wb-unacked li")).to_have_count(2)
        expect(board_page.locator("#wb-unacked li.overdue")).to_have_count(0)
        expect(board_page.locator("#wb-unacked-count")).not_to_have_class(re.compile(r"\balert\b"))
        board_guard.check()
    finally:
        board.close()

    # The agency without a system of its own sees it highlighted, and acknowledges.
    agency = browser.new_context(viewport={"width": 1100, "height": 700})
    try:
        agency_guard = Guard()
        agency_page = agency_guard.watch(agency.new_page())
        sign_in(agency_page, server, "bpbd-staff")
        card = agency_page.locator(f"article[data-id='{ids['bpbd']}']")
        expect(card).to_have_class("dispatch-card resent")
        expect(card.locator(".resent-note")).to_contain_text("DIKIRIM ULANG")
        screenshot(agency_page, "agency-resent")
        card.locator("button[data-action=acknowledged]").focus()
        agency_page.keyboard.press("Enter")
        expect(card.locator("button[data-action=en_route]")).to_be_visible()
        expect(card.locator(".resent-note")).to_have_count(0)
        agency_guard.check()
    finally:
        agency.close()

    expect(bpbd).to_have_attribute("data-status", "acknowledged")
    expect(bpbd.locator("button.resend")).to_have_count(0)
    page.keyboard.press("u")
    expect(page.locator("#chooser-list li")).to_have_count(1)
    expect(page.locator("#chooser-list li")).to_contain_text("Polri")
    page.keyboard.press("Escape")
    with server.api() as api:
        r = api.post(f"/v1/dispatches/{ids['bpbd']}/resend")
        assert (r.status_code, r.json()["code"]) == (409, "dispatch_not_waiting")
        [one] = [
            d
            for d in api.get(f"/v1/incidents/{incident}/dispatches").json()
            if d["agency_code"] == "bpbd"
        ]
    assert one["resend_count"] == 1
    assert one["status"] == "acknowledged"
    with server.api() as api:
        [polri_row] = [
            d
            for d in api.get(f"/v1/incidents/{incident}/dispatches").json()
            if d["agency_code"] == "polri"
        ]
    assert polri_row["resend_count"] == 1
