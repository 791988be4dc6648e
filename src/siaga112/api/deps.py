"""Dependency aliases for routers: database session, the acting API key, permissions."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.auth.failures import AuthFailureLimiter
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor, find_actor
from siaga112.errors import CsrfFailed, Forbidden, TooManyAuthFailures, Unauthorized
from siaga112.metrics import Metrics

log = logging.getLogger(__name__)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="API key from `siaga112 apikey create`")


def _source(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


# The console's session cookie (siaga112.console): the same API, for people in a browser.
SESSION_COOKIE = "siaga112_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CookieUser(Protocol):
    """A person signed in to the console (`siaga112.accounts.service.SessionUser`)."""

    @property
    def actor(self) -> Actor: ...

    @property
    def csrf_token(self) -> str: ...


class FindConsoleSession(Protocol):
    """How a session cookie becomes its user: `siaga112.accounts.cache.SessionCache` over
    `accounts.service.find_session`, handed in by the composition root
    (app.state.find_console_session): the accounts capability builds on the API's shared
    pieces, so it is not imported here. `fresh` asks the database, never a kept session."""

    async def __call__(
        self, session: AsyncSession, token: str, *, fresh: bool = False
    ) -> CookieUser | None: ...

    def forget(self, token: str) -> None: ...


async def console_user(request: Request, session: AsyncSession) -> CookieUser | None:
    """The person signed in with this request's session cookie, if any (cached per request)."""
    if hasattr(request.state, "console_user"):
        cached: CookieUser | None = request.state.console_user
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    find: FindConsoleSession | None = getattr(request.app.state, "find_console_session", None)
    # A write always asks the database: a session ended elsewhere may read a few seconds
    # longer from a kept copy (console.session_cache_s), but never change anything.
    fresh = request.method not in _SAFE_METHODS
    user = await find(session, token, fresh=fresh) if token and find is not None else None
    request.state.console_user = user
    return user


def forget_console_session(request: Request) -> None:
    """After signing out: this instance must not answer the ended session from its cache."""
    token = request.cookies.get(SESSION_COOKIE)
    find: FindConsoleSession | None = getattr(request.app.state, "find_console_session", None)
    if token and find is not None:
        find.forget(token)


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def get_actor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    limiter: AuthFailureLimiter | None = getattr(request.app.state, "auth_limiter", None)
    source = _source(request)
    if limiter is not None and (wait := limiter.retry_after(source)) is not None:
        raise TooManyAuthFailures(
            "too many failed authentications from this address; try again later",
            retry_after_s=wait,
        )
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
        metrics: Metrics | None = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.inc("api_auth_failures")
        if limiter is not None:
            limiter.failed(source)
        # Never the key itself: a mistyped good key would end up in the logs.
        log.warning(
            "authentication failed: unknown, revoked or expired API key from %s %s %s",
            source,
            request.method,
            request.url.path,
        )
        raise Unauthorized("unknown, revoked or expired API key")
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


async def _request_id(request: Request) -> str | None:
    # A coroutine: FastAPI runs a plain function dependency in its thread pool, a thread hop
    # (and a wait for a free thread under load) on every request that records its id.
    return request_id(request)


RequestId = Annotated[str | None, Depends(_request_id)]
