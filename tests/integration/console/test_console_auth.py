"""Console sign-in and its session cookie as a client of /v1: wrong passwords, lock-out, CSRF on
every write, no session fixation, disabled accounts refused at once for writes and within the
session cache's time for reads, signed-out sessions refused at once,
audit of every sign-in and sign-out, and the pages' security headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.accounts.cache import SessionCache
from siaga112.accounts.service import create_user, set_disabled
from siaga112.api.deps import SESSION_COOKIE
from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.config import Settings
from siaga112.incidents.models import Incident

PASSWORD = "correct horse 112"
_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


async def _user(
    sm: async_sessionmaker,  # type: ignore[type-arg]
    username: str,
    role: Role = Role.OPERATOR,
    *,
    name: str = "Siti Rahayu",
    extension: str | None = None,
) -> None:
    async with sm() as session:
        await create_user(
            session=session,
            username=username,
            display_name=name,
            role=role,
            actor=system_actor("tests"),
            password=PASSWORD,
            extension=extension,
        )
        await session.commit()


async def _sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200
    match = _TOKEN.search(page.text)
    assert match is not None
    return await client.post(
        "/console/login",
        data={"username": username, "password": password, "login_token": match.group(1)},
    )


async def _audits(sm: async_sessionmaker, action: str) -> list[AuditEvent]:  # type: ignore[type-arg]
    async with sm() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                )
            ).all()
        )


async def _incident_count(sm: async_sessionmaker) -> int:  # type: ignore[type-arg]
    async with sm() as session:
        return int(await session.scalar(select(func.count()).select_from(Incident)) or 0)


async def test_sign_in_sets_a_strict_cookie_and_lands_on_the_role_screen(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "siti", extension="6001")
    r = await _sign_in(client, "Siti", PASSWORD)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/operator"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https below
    page = await client.get("/console/operator")
    assert page.status_code == 200
    assert "Siti Rahayu" in page.text
    assert (await client.get("/v1/incidents")).status_code == 200
    [audit] = await _audits(sessionmaker, "console.signin")
    assert audit.actor == "user:siti"


async def test_cookie_is_secure_over_https(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "tls-user")
    secure = httpx.AsyncClient(transport=client._transport, base_url="https://siaga112.test")
    async with secure:
        r = await _sign_in(secure, "tls-user", PASSWORD)
        assert r.status_code == 303
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        assert "Secure" in cookie


async def test_wrong_password_is_refused_audited_and_sets_no_session(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "budi")
    r = await _sign_in(client, "budi", "wrong password")
    assert r.status_code == 401
    assert 'id="signin-error"' in r.text
    assert SESSION_COOKIE not in client.cookies
    r = await _sign_in(client, "nobody-here", "whatever1")
    assert r.status_code == 401
    failed = await _audits(sessionmaker, "console.signin_failed")
    assert [a.after["reason"] for a in failed if a.after] == ["wrong_password", "unknown_user"]
    assert (await client.get("/v1/incidents")).status_code == 401


async def test_lock_out_after_repeated_failures_refuses_even_the_right_password(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "dewi")
    for _ in range(5):  # the default lockout_after
        assert (await _sign_in(client, "dewi", "nope-nope")).status_code == 401
    r = await _sign_in(client, "dewi", PASSWORD)
    assert r.status_code == 401
    assert "dikunci" in r.text  # the Indonesian lock-out message
    reasons = [
        (a.after or {})["reason"] for a in await _audits(sessionmaker, "console.signin_failed")
    ]
    assert reasons == ["wrong_password"] * 4 + ["locked_now", "locked"]
    assert SESSION_COOKIE not in client.cookies


async def test_writes_need_the_sessions_csrf_token(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "rina")
    assert (await _sign_in(client, "rina", PASSWORD)).status_code == 303
    page = await client.get("/console/operator")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    before = await _incident_count(sessionmaker)
    body = {"channel": "walk_in", "summary": "Pohon tumbang"}
    r = await client.post("/v1/incidents", json=body)
    assert r.status_code == 403
    assert r.json()["code"] == "csrf_failed"
    r = await client.post("/v1/incidents", json=body, headers={"X-CSRF-Token": "x" * 43})
    assert r.status_code == 403
    assert r.json()["code"] == "csrf_failed"
    assert await _incident_count(sessionmaker) == before
    r = await client.post("/v1/incidents", json=body, headers={"X-CSRF-Token": csrf.group(1)})
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "user:rina"
    # Sign-out is a write too.
    assert (await client.post("/console/logout", data={"csrf_token": "bad"})).status_code == 403
    assert (await client.get("/v1/incidents")).status_code == 200


async def test_sign_in_never_adopts_a_planted_session_cookie(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "agus")
    planted = "attacker-chosen-token-value"
    client.cookies.set(SESSION_COOKIE, planted, domain="siaga112.test")
    assert (await client.get("/v1/incidents")).status_code == 401
    r = await _sign_in(client, "agus", PASSWORD)
    assert r.status_code == 303
    issued = client.cookies.get(SESSION_COOKIE)
    assert issued
    assert issued != planted
    # The planted value still signs nobody in; a second sign-in gets yet another session.
    attacker = httpx.AsyncClient(transport=client._transport, base_url="http://siaga112.test")
    async with attacker:
        attacker.cookies.set(SESSION_COOKIE, planted, domain="siaga112.test")
        assert (await attacker.get("/v1/incidents")).status_code == 401
    client.cookies.clear()
    assert (await _sign_in(client, "agus", PASSWORD)).status_code == 303
    assert client.cookies.get(SESSION_COOKIE) not in (None, planted, issued)


class Clock:
    """The session cache's clock, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clocked(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    """A client of an app whose session cache runs on a clock of the test's."""
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker)
    clock = Clock()
    cache: SessionCache = app.state.find_console_session
    cache.clock = clock
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c, clock


async def _csrf(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/operator")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return csrf.group(1)


async def test_disabled_accounts_stop_writing_at_once_and_reading_within_the_cache_time(
    clocked: tuple[httpx.AsyncClient, Clock],
    settings: Settings,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    client, clock = clocked
    await _user(sessionmaker, "eko")
    assert (await _sign_in(client, "eko", PASSWORD)).status_code == 303
    assert (await client.get("/v1/incidents")).status_code == 200
    async with sessionmaker() as session:
        await set_disabled(
            session=session, username="eko", disabled=True, actor=system_actor("tests")
        )
        await session.commit()
    # Disabled by another process (the CLI): a read may be answered from the session kept in
    # memory, for session_cache_s at most.
    assert settings.console.session_cache_s > 0
    assert (await client.get("/v1/incidents")).status_code == 200
    clock.now += settings.console.session_cache_s
    assert (await client.get("/v1/incidents")).status_code == 401
    assert (await client.get("/console/operator")).headers["location"] == "/console/login"
    # Enabled again, the old session stays revoked: a new sign-in is needed.
    async with sessionmaker() as session:
        await set_disabled(
            session=session, username="eko", disabled=False, actor=system_actor("tests")
        )
        await session.commit()
    assert (await client.get("/v1/incidents")).status_code == 401
    client.cookies.clear()
    assert (await _sign_in(client, "eko", PASSWORD)).status_code == 303
    csrf = await _csrf(client)
    assert (await client.get("/v1/incidents")).status_code == 200
    async with sessionmaker() as session:
        await set_disabled(
            session=session, username="eko", disabled=True, actor=system_actor("tests")
        )
        await session.commit()
    # A write always asks the database: refused at once, and the kept copy is dropped with it.
    before = await _incident_count(sessionmaker)
    body = {"channel": "walk_in", "summary": "Pohon tumbang"}
    r = await client.post("/v1/incidents", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401
    assert await _incident_count(sessionmaker) == before
    assert (await client.get("/v1/incidents")).status_code == 401


async def test_a_signed_out_session_ends_at_once_on_its_instance(
    clocked: tuple[httpx.AsyncClient, Clock],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    client, _ = clocked
    await _user(sessionmaker, "eko")
    assert (await _sign_in(client, "eko", PASSWORD)).status_code == 303
    token = client.cookies.get(SESSION_COOKIE)
    csrf = await _csrf(client)
    # Kept in memory by these reads; the clock does not move.
    assert (await client.get("/v1/incidents")).status_code == 200
    r = await client.post("/console/logout", data={"csrf_token": csrf})
    assert r.status_code == 303
    [signout] = await _audits(sessionmaker, "console.signout")
    assert signout.actor == "user:eko"
    client.cookies.set(SESSION_COOKIE, token or "", domain="siaga112.test")
    assert (await client.get("/v1/incidents")).status_code == 401
    assert (await client.get("/console/operator")).headers["location"] == "/console/login"


async def test_login_form_needs_its_own_token(client: httpx.AsyncClient) -> None:
    r = await client.post("/console/login", data={"username": "x", "password": "y"})
    assert r.status_code == 403


async def test_roles_keep_their_screens_and_api_scope(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await _user(sessionmaker, "op-only")
    assert (await _sign_in(client, "op-only", PASSWORD)).status_code == 303
    assert (await client.get("/console/wallboard")).status_code == 403
    assert (await client.get("/console/agency")).status_code == 403
    async with sessionmaker() as session:
        with pytest.raises(Exception, match="no console"):
            await create_user(
                session=session,
                username="integr",
                display_name="x",
                role=Role.INTEGRATOR,
                actor=system_actor("tests"),
            )


async def test_pages_carry_a_strict_policy_and_render_names_inert(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    await _user(sessionmaker, "xss", name=hostile)
    login = await client.get("/console/login")
    csp = login.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert login.headers["x-content-type-options"] == "nosniff"
    assert login.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in login.text  # no inline script at all
    assert (await _sign_in(client, "xss", PASSWORD)).status_code == 303
    page = await client.get("/console/operator")
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(2)&gt;" in page.text
    # Inside the JSON data block, too: escaped so that it cannot end the block.
    assert "\\u003c/script\\u003e" in page.text
    static = await client.get("/console/static/js/common.js")
    assert static.headers["x-content-type-options"] == "nosniff"


async def test_agency_staff_get_the_agency_scope_of_the_api(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    async with sessionmaker() as session:
        await create_user(
            session=session,
            username="pos-damkar",
            display_name="Pos Damkar",
            role=Role.AGENCY,
            actor=system_actor("tests"),
            password=PASSWORD,
            agency_code="damkar",
        )
        await session.commit()
    r = await _sign_in(client, "pos-damkar", PASSWORD)
    assert r.headers["location"] == "/console/agency"
    assert (await client.get("/console/agency")).status_code == 200
    assert (await client.get("/console/operator")).status_code == 403
    r = await client.get("/v1/incidents")
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert (await client.get("/v1/dispatches")).status_code == 200


async def test_a_signed_in_operator_acts_as_the_operator_of_its_linked_phone(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    keys: dict[Role, str],
) -> None:
    sup = {"Authorization": f"Bearer {keys[Role.SUPERVISOR]}"}
    for ext, name in (("7401", "Wati"), ("7402", "Yudi")):
        r = await client.post("/v1/operators", headers=sup, json={"extension": ext, "name": name})
        assert r.status_code == 201, r.text
    await _user(sessionmaker, "wati", extension="7401")
    assert (await _sign_in(client, "wati", PASSWORD)).status_code == 303
    page = await client.get("/console/operator")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    h = {"X-CSRF-Token": csrf.group(1)}
    other = await client.post("/v1/operators/7402/login", headers=h)
    assert (other.status_code, other.json()["code"]) == (403, "not_own_operator")
    # Its own phone: past the check (no telephony in this app, so the queue answers 503).
    own = await client.post("/v1/operators/7401/login", headers=h)
    assert own.status_code != 403, own.text
