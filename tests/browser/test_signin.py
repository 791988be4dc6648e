"""Signing in and out in the browser, the language switch, and hostile caller data rendered
inert on the call-taker screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Guard, Server, add_operator, screenshot, sign_in


@pytest.fixture(scope="module")
def operator(server: Server) -> str:
    return add_operator(server, "op-signin", "7101", "Siti Rahayu")


def test_sign_in_wrong_password_then_right_then_sign_out(
    page: Page, server: Server, operator: str, guard: Guard
) -> None:
    guard.allow(401, "/console/login")
    page.goto(f"{server.url}/console")
    expect(page).to_have_url(f"{server.url}/console/login")
    expect(page.locator("h1")).to_have_text("Masuk ke konsol")
    screenshot(page, "signin")
    page.fill("#username", operator)
    page.fill("#password", "salah-sandi")
    page.press("#password", "Enter")
    expect(page.locator("#signin-error")).to_have_text("Nama pengguna atau kata sandi salah.")
    sign_in(page, server, operator)
    expect(page).to_have_url(f"{server.url}/console/operator")
    expect(page.locator("#who")).to_contain_text("Siti Rahayu")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["siaga112_session"]["httpOnly"] is True
    assert cookies["siaga112_session"]["sameSite"] == "Strict"
    # httpOnly: the page's own script cannot read the session token
    assert "siaga112_session" not in page.evaluate("document.cookie")
    page.click("#signout")
    expect(page).to_have_url(f"{server.url}/console/login")
    page.goto(f"{server.url}/console/operator")
    expect(page).to_have_url(f"{server.url}/console/login")


def test_language_switch_to_english_and_back(page: Page, server: Server, operator: str) -> None:
    sign_in(page, server, operator)
    expect(page.locator("#queue-h")).to_contain_text("Antrean")
    page.click("a[hreflang=en]")
    expect(page.locator("#queue-h")).to_contain_text("Queue")
    expect(page.locator("#join")).to_contain_text("Join queue")
    page.click("a[hreflang=id]")
    expect(page.locator("#queue-h")).to_contain_text("Antrean")


def test_hostile_caller_name_and_note_render_inert(
    page: Page, server: Server, operator: str
) -> None:
    script = "<script>window.__pwned = 1</script>"
    img = '<img src="/console/pwned.png" onerror="window.__pwned = 2">'
    with server.api() as api:
        r = api.post(
            "/v1/incidents",
            json={"channel": "walk_in", "caller_name": script + img, "address": img},
        )
        assert r.status_code == 201, r.text
        incident = r.json()["id"]
        r = api.post(f"/v1/incidents/{incident}/notes", json={"text": script})
        assert r.status_code == 201, r.text
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    sign_in(page, server, operator)
    page.goto(f"{server.url}/console/operator#incident-{incident}")
    caller = page.locator("#inc-caller")
    expect(caller).to_contain_text(script + img)
    expect(page.locator("#timeline")).to_contain_text(script)
    expect(page.locator("#inc-address")).to_have_value(img)
    assert page.locator("#incident img, #incident script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert not any("pwned" in u for u in requested)
    screenshot(page, "xss-inert")
