"""Dependency aliases for routers: database session, the acting API key, permissions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.auth.failures import AuthFailureLimiter
from siaga112.auth.roles import Permission
from siaga112.auth.service import Actor, find_actor
from siaga112.errors import Forbidden, TooManyAuthFailures, Unauthorized
from siaga112.metrics import Metrics

log = logging.getLogger(__name__)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="API key from `siaga112 apikey create`")


def _source(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


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


RequestId = Annotated[str | None, Depends(request_id)]
