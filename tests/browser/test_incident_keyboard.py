"""An incident handled from the call-taker screen with the keyboard alone: confirm one of
several locations on the map, classify, set the category (its default agencies tick
themselves), dispatch to two agencies, watch an agency acknowledge on its own page, close.
(The same with a real call through Asterisk, answered by a SIPp phone: tests/e2e.)"""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from siaga112.auth.roles import Role
from tests.browser.conftest import Guard, Server, add_operator, add_user, screenshot, sign_in

# Typed by the operator from what the caller said; markup in it must stay text.
LANDMARK = "Seberang <b>Summarecon</b> & Masjid Al-Ikhlas"


def test_incident_to_closure_with_the_keyboard(
    page: Page, server: Server, browser: Browser
) -> None:
    add_operator(server, "op-keys", "7102", "Dewi Lestari")
    add_user(server, "damkar-staff", Role.AGENCY, name="Pos Damkar Bekasi", agency="damkar")
    with server.api() as api:
        r = api.put("/v1/dispatch-defaults/kebakaran", json={"agencies": ["damkar", "dinkes"]})
        assert r.status_code == 200, r.text
        r = api.post(
            "/v1/incidents",
            json={"channel": "walk_in", "caller_number": "+6281234500001", "priority": 3},
        )
        assert r.status_code == 201, r.text
        incident = r.json()["id"]
        # Two fixes: a coarse one and a precise one; neither confirmed yet.
        for lat, lon, radius in ((-6.2383, 106.9756, 900.0), (-6.2412, 106.9921, 35.0)):
            r = api.post(
                f"/v1/incidents/{incident}/locations",
                json={"lat": lat, "lon": lon, "radius_m": radius, "confirm": False},
            )
            assert r.status_code == 201, r.text

    sign_in(page, server, "op-keys")
    page.goto(f"{server.url}/console/operator#incident-{incident}")
    expect(page.locator("#inc-title")).to_have_text(f"Insiden #{incident}")
    expect(page.locator("#locations li")).to_have_count(2)
    expect(page.locator("body")).to_have_attribute("data-ready", "1")

    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    screenshot(page, "operator-help")
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()

    # Locate: the second (precise) fix becomes the confirmed one.
    page.keyboard.press("l")
    expect(page.locator("#chooser")).to_be_visible()
    page.keyboard.press("2")
    expect(page.locator("#locations li.confirmed")).to_have_count(1)
    expect(page.locator("#locations li.confirmed")).to_contain_text("±35 m")

    # Classify: emergency; category: kebakaran (the first of each list).
    page.keyboard.press("k")
    page.keyboard.press("1")
    expect(page.locator("#inc-classification")).to_have_value("emergency")
    page.keyboard.press("c")
    page.keyboard.press("1")
    expect(page.locator("#inc-category")).to_have_value("kebakaran")
    expect(page.locator("#agency-damkar")).to_be_checked()
    expect(page.locator("#agency-dinkes")).to_be_checked()

    # Address, then Tab to the landmark (its own field), and a note, typed; Enter saves,
    # Escape is never needed after Enter. The landmark is the caller's words: drawn inert.
    page.keyboard.press("a")
    page.keyboard.type("Jl. Ahmad Yani No. 1, Kec. Bekasi Selatan")
    page.keyboard.press("Tab")
    expect(page.locator("#inc-landmark")).to_be_focused()
    page.keyboard.type(LANDMARK)
    page.keyboard.press("Enter")
    expect(page.locator("#inc-kecamatan")).to_have_text("Bekasi Selatan")
    page.keyboard.press("m")
    expect(page.locator("#inc-landmark")).to_be_focused()
    expect(page.locator("#inc-landmark")).to_have_value(LANDMARK)
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    page.keyboard.type("Asap tebal dari lantai dua")
    page.keyboard.press("Enter")
    expect(page.locator("#timeline")).to_contain_text("Asap tebal dari lantai dua")

    # Flag the number: F goes to the reason; Enter flags it (prank, one day by default).
    page.keyboard.press("f")
    page.keyboard.type("Menelepon berulang kali sambil tertawa")
    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_contain_text("+6281234500001 ditandai")

    # Dispatch in one key to the ticked (default) agencies.
    page.keyboard.press("d")
    expect(page.locator("#dispatch-list li")).to_have_count(2)
    expect(page.locator("#dispatch-list li[data-agency=damkar]")).to_have_attribute(
        "data-status", "sent"
    )
    expect(page.locator("#dispatch-list li[data-agency=damkar] .timer")).to_contain_text(
        "menunggu konfirmasi"
    )
    screenshot(page, "operator-incident")

    # The agency acknowledges on its own page, by keyboard.
    agency = browser.new_context(viewport={"width": 1100, "height": 700})
    try:
        agency_guard = Guard()
        agency_page = agency_guard.watch(agency.new_page())
        sign_in(agency_page, server, "damkar-staff")
        expect(agency_page).to_have_url(re.compile(r"/console/agency$"))
        card = agency_page.locator(f"article[data-incident='{incident}']")
        expect(card).to_have_count(1)
        expect(agency_page.locator("article")).to_have_count(1)  # only its own dispatch
        expect(card).to_contain_text("Jl. Ahmad Yani No. 1")
        expect(card.locator(".landmark")).to_have_text(f"Patokan: {LANDMARK}")
        expect(card.locator(".landmark b")).to_have_count(0)
        screenshot(agency_page, "agency")
        card.locator("button[data-action=acknowledged]").focus()
        agency_page.keyboard.press("Enter")
        expect(card.locator("button[data-action=en_route]")).to_be_visible()
        agency_guard.check()
    finally:
        agency.close()

    expect(page.locator("#dispatch-list li[data-agency=damkar]")).to_have_attribute(
        "data-status", "acknowledged"
    )
    expect(page.locator("#dispatch-list li[data-agency=dinkes]")).to_have_attribute(
        "data-status", "sent"
    )

    # Close: X, then confirm with Enter (dispatched incidents are resolved, then closed).
    page.keyboard.press("x")
    expect(page.locator("#chooser")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "closed")
    # The status changes read as words on the timeline, not as the data's object.
    expect(page.locator("#timeline li[data-kind=status_changed]").first).to_contain_text(
        "Terselesaikan → Ditutup"
    )
    expect(page.locator("#timeline")).not_to_contain_text("[object Object]")
    with server.api() as api:
        body = api.get(f"/v1/incidents/{incident}").json()
    assert body["status"] == "closed"
    assert body["classification"] == "emergency"
    assert body["category"] == "kebakaran"
    assert body["address"] == "Jl. Ahmad Yani No. 1, Kec. Bekasi Selatan"
    assert body["landmark"] == LANDMARK
    assert [loc["radius_m"] for loc in body["locations"] if loc["confirmed"]] == [35.0]
    actors = {e["actor"] for e in body["timeline"] if e["kind"] in ("note", "status_changed")}
    assert actors == {"user:op-keys"}
    with server.api() as api:
        flags = api.get("/v1/number-flags").json()
    [flag] = [f for f in flags if f["number"] == "+6281234500001"]
    assert flag["kind"] == "prank"
    assert flag["reason"] == "Menelepon berulang kali sambil tertawa"
