"""The console's pages: sign-in and sign-out, the language switch, and one page shell per
screen. The shells carry no data about calls: the browser reads that from /v1 with the session
cookie, so that every read is audited exactly as for any other API client."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.accounts.service import SessionUser, SignInRefused, sign_in, sign_out
from siaga112.api.deps import (
    SESSION_COOKIE,
    SessionDep,
    console_user,
    csrf_matches,
    forget_console_session,
    request_id,
)
from siaga112.auth.roles import Role
from siaga112.config import Settings
from siaga112.console.i18n import LANGUAGES, catalog, pick_language
from siaga112.incidents.lifecycle import Category, Classification

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
DEMO_BOUNDARIES = STATIC_DIR / "geo" / "kota-bekasi-kecamatan-approx.geojson"
LANG_COOKIE = "siaga112_lang"
LOGIN_COOKIE = "siaga112_login"
MAX_FORM_BYTES = 4096

PAUSE_REASONS = ("break", "prayer", "meal", "training", "briefing", "technical")
# The screen each role lands on after signing in.
HOME = {
    Role.OPERATOR: "/console/operator",
    Role.SUPERVISOR: "/console/wallboard",
    Role.ADMIN: "/console/wallboard",
    Role.AGENCY: "/console/agency",
}
SCREENS: dict[str, frozenset[Role]] = {
    "operator": frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN}),
    "wallboard": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    "agency": frozenset({Role.AGENCY, Role.SUPERVISOR, Role.ADMIN}),
}
ZONE_ABBREVIATIONS = {
    "Asia/Jakarta": "WIB",
    "Asia/Pontianak": "WIB",
    "Asia/Makassar": "WITA",
    "Asia/Jayapura": "WIT",
}

router = APIRouter(prefix="/console", include_in_schema=False)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _language(request: Request) -> str:
    return pick_language(
        request.cookies.get(LANG_COOKIE), _settings(request).console.default_language
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or _settings(request).console.force_secure_cookies


def _render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    lang = _language(request)
    texts = catalog(lang)
    html = _env.get_template(template).render(
        _=lambda key: texts.get(key, key),
        lang=lang,
        languages=LANGUAGES,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


async def _user(request: Request, session: SessionDep) -> SessionUser | None:
    # The composition root hands the API accounts.service.find_session: its users are these.
    return cast(SessionUser | None, await console_user(request, session))


CurrentUser = Annotated[SessionUser | None, Depends(_user)]


def _to_login() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


@router.get("")
@router.get("/")
async def home(user: CurrentUser) -> Response:
    if user is None:
        return _to_login()
    return RedirectResponse(HOME[user.role], status_code=303)


def _login_page(request: Request, *, error: str | None, status_code: int) -> HTMLResponse:
    # Login CSRF: the form's token must match a cookie only this site could have set.
    token = secrets.token_urlsafe(24)
    response = _render(
        request, "login.html", status_code=status_code, login_token=token, error=error
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
        max_age=3600,
    )
    return response


@router.get("/login")
async def login_form(request: Request, user: CurrentUser) -> Response:
    if user is not None:
        return RedirectResponse(HOME[user.role], status_code=303)
    return _login_page(request, error=None, status_code=200)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {k: v[0] for k, v in parsed.items() if v}


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await _form(request)
    if not csrf_matches(request.cookies.get(LOGIN_COOKIE, ""), form.get("login_token")) or not (
        request.cookies.get(LOGIN_COOKIE)
    ):
        return _login_page(request, error="signin.error.expired", status_code=403)
    client = request.client.host if request.client else None
    try:
        result = await sign_in(
            session=session,
            username=form.get("username", ""),
            password=form.get("password", ""),
            settings=_settings(request).console,
            client=client,
            request_id=request_id(request),
        )
    except SignInRefused as refused:
        await session.commit()
        error = "signin.error.locked" if refused.locked else "signin.error.wrong"
        return _login_page(request, error=error, status_code=401)
    await session.commit()
    response = RedirectResponse(HOME[result.user.role], status_code=303)
    # A new random token at every sign-in: a cookie planted before sign-in is never upgraded.
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
        max_age=_settings(request).console.session_max_h * 3600,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    form = await _form(request)
    response = _to_login()
    if user is not None:
        if not csrf_matches(user.csrf_token, form.get("csrf_token")):
            return Response(status_code=403, content="csrf_failed")
        await sign_out(session=session, user=user, request_id=request_id(request))
        await session.commit()
        forget_console_session(request)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
async def switch_language(request: Request, lang: str, next: str = "/console") -> Response:
    # Only a path of the console itself: never an open redirect.
    target = next if next.startswith("/console") and "//" not in next else "/console"
    response = RedirectResponse(target, status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            samesite="strict",
            secure=_secure(request),
            path="/",
            max_age=365 * 86400,
        )
    return response


def _page_data(request: Request, user: SessionUser, screen: str) -> dict[str, Any]:
    console = _settings(request).console
    lang = _language(request)
    return {
        "screen": screen,
        "lang": lang,
        "user": {
            "username": user.username,
            "name": user.display_name,
            "role": user.role.value,
            "extension": user.extension,
            "agency": user.agency_code,
        },
        "csrf": user.csrf_token,
        "timezone": console.timezone,
        "zone": ZONE_ABBREVIATIONS[console.timezone],
        # Indonesia's zones keep one offset all year (no daylight saving).
        "utc_offset": datetime.now(ZoneInfo(console.timezone)).strftime("%z"),
        "map": {
            "center": list(console.map_center),
            "zoom": console.map_zoom,
            "tile_url": console.tile_url,
            "tile_attribution": console.tile_attribution,
        },
        "categories": [c.value for c in Category],
        "classifications": [c.value for c in Classification],
        "pause_reasons": list(PAUSE_REASONS),
        "ack_timeout_s": _settings(request).dispatch.ack_timeout_s,
        "texts": catalog(lang),
    }


async def _screen(request: Request, session: AsyncSession, screen: str) -> Response:
    user = await _user(request, session)
    if user is None:
        return _to_login()
    if user.role not in SCREENS[screen]:
        return _render(request, "forbidden.html", status_code=403, user=user)
    return _render(
        request,
        f"{screen}.html",
        user=user,
        screen=screen,
        page_data=_page_data(request, user, screen),
    )


@router.get("/operator")
async def operator_screen(request: Request, session: SessionDep) -> Response:
    return await _screen(request, session, "operator")


@router.get("/wallboard")
async def wallboard_screen(request: Request, session: SessionDep) -> Response:
    return await _screen(request, session, "wallboard")


@router.get("/agency")
async def agency_screen(request: Request, session: SessionDep) -> Response:
    return await _screen(request, session, "agency")


@router.get("/boundaries.geojson")
async def boundaries(request: Request, user: CurrentUser) -> Response:
    """The centre's kecamatan outlines (the configured file, or the approximate demo ones)."""
    if user is None:
        return Response(status_code=401)
    path = _settings(request).console.boundary_file or DEMO_BOUNDARIES
    return Response(
        path.read_bytes(),
        media_type="application/geo+json",
        headers={"Cache-Control": "private, max-age=3600"},
    )
