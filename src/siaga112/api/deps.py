"""Dependency aliases for routers: database session, the acting API key, permissions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.accounts.service import SessionUser, csrf_matches, find_session
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor, find_actor
from siaga112.errors import CsrfFailed, Forbidden, Unauthorized


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="API key from `siaga112 apikey create`")


# The console's session cookie (siaga112.console): the same API, for people in a browser.
SESSION_COOKIE = "siaga112_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def console_user(request: Request, session: AsyncSession) -> SessionUser | None:
    """The person signed in with this request's session cookie, if any (cached per request)."""
    if hasattr(request.state, "console_user"):
        cached: SessionUser | None = request.state.console_user
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    user = (
        await find_session(
            session=session, token=token, settings=request.app.state.settings.console
        )
        if token
        else None
    )
    request.state.console_user = user
    return user


async def get_actor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None and SESSION_COOKIE in request.cookies:
        user = await console_user(request, session)
        if user is None:
            raise Unauthorized("the console session ended; sign in again")
        # A cookie rides along with any request the browser makes, also one another site
        # triggers: a change needs the session's token, which only our own pages can read.
        if request.method not in _SAFE_METHODS and not csrf_matches(
            user.csrf_token, request.headers.get(CSRF_HEADER)
        ):
            raise CsrfFailed(f"missing or wrong {CSRF_HEADER} header")
        return user.actor
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer API key")
    actor = await find_actor(session=session, raw=credentials.credentials)
    if actor is None:
        raise Unauthorized("unknown or revoked API key")
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require(permission: Permission) -> Callable[[Actor], Awaitable[Actor]]:
    async def _check(actor: CurrentActor) -> Actor:
        if not actor.can(permission):
            raise Forbidden(f"role {actor.role.value} may not do this ({permission.value})")
        return actor

    return _check


Reader = Annotated[Actor, Depends(require(Permission.READ))]
IncidentWriter = Annotated[Actor, Depends(require(Permission.WRITE_INCIDENTS))]
AgencyManager = Annotated[Actor, Depends(require(Permission.MANAGE_AGENCIES))]


def request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


RequestId = Annotated[str | None, Depends(request_id)]
