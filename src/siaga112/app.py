"""Composition root: builds the engine, session factory and API (and, with `serve`, the
telephony side) and hands them in. Nothing is created at import time."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112 import __version__
from siaga112.accounts.cache import SessionCache
from siaga112.accounts.service import SessionUser, find_session
from siaga112.agencies.router import router as agencies_router
from siaga112.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from siaga112.auth.failures import AuthFailureLimiter
from siaga112.callbacks.router import router as callbacks_router
from siaga112.callcontrol.protocol import CallControl
from siaga112.callcontrol.router import router as callcontrol_router
from siaga112.callers.flags_router import router as flags_router
from siaga112.callers.router import router as callers_router
from siaga112.casefile.calls_router import router as call_detail_router
from siaga112.casefile.duplicates_router import router as duplicates_router
from siaga112.casefile.incidents_router import router as incidents_router
from siaga112.config import ConsoleSettings, Settings
from siaga112.console.router import STATIC_DIR
from siaga112.console.router import router as console_router
from siaga112.console.security import ConsoleCompressionMiddleware, ConsoleHeadersMiddleware
from siaga112.db.session import make_engine, make_sessionmaker
from siaga112.dispatch.router import router as dispatch_router
from siaga112.dispatch.router import webhook_docs as dispatch_webhook_docs
from siaga112.errors import Forbidden, install_error_handlers
from siaga112.events.hub import EventHub
from siaga112.events.router import router as events_router
from siaga112.locations.aml_router import router as aml_router
from siaga112.locations.aml_router import unmatched_router as aml_unmatched_router
from siaga112.locations.router import router as locations_router
from siaga112.metrics import Metrics
from siaga112.net import METRICS_FORBIDDEN, address_in, outbound_policy
from siaga112.operators.router import router as operators_router
from siaga112.queue.router import router as queue_router
from siaga112.queue.service import QueueSnapshot
from siaga112.recordings.router import router as recordings_router
from siaga112.reports.router import router as reports_router
from siaga112.stats.router import router as stats_router

log = logging.getLogger(__name__)

# A readiness probe for a component other than the database: returns (ready, detail).
ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]

DESCRIPTION = """
siaga112 answers 112 emergency calls through Asterisk, opens one incident per call and hands
it to the agencies. Every `/v1` route needs `Authorization: Bearer <API key>`; keys come from
`siaga112 apikey create --role ROLE --name NAME`. Roles: `operator` (read, write incidents),
`supervisor` (also agencies, reopen closed incidents), `integrator` (read only), `admin`,
`agency` (bound to one agency with `--agency CODE`: only `/v1/dispatches` sent to it).

Errors are JSON: `{"code": "...", "message": "...", "details": [...]}` with a stable `code`.
"""


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    metrics: Metrics | None = None,
    event_hub: EventHub | None = None,
    call_control: CallControl | None = None,
) -> FastAPI:
    owns_engine = engine is None
    engine = engine or make_engine(settings)
    sessionmaker = sessionmaker or make_sessionmaker(engine)
    checks = dict(readiness or {})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owns_engine:
                await engine.dispose()

    app = FastAPI(
        title="siaga112",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "incidents", "description": "Incidents, their timeline, notes, duplicates"},
            {"name": "calls", "description": "Calls that reached the centre"},
            {"name": "callers", "description": "Caller history by number (audited reads)"},
            {"name": "locations", "description": "Caller locations: history, best, GeoJSON"},
            {"name": "agencies", "description": "Agencies that receive incidents"},
            {
                "name": "dispatch",
                "description": "Incidents handed to agencies; agency keys see only their own",
            },
            {"name": "webhooks", "description": "Signed delivery to agency systems (outbox)"},
            {"name": "operators", "description": "Operators: SIP accounts, queue sessions"},
            {"name": "queue", "description": "The live queue: waiting callers, operators"},
            {
                "name": "recordings",
                "description": "Call recordings: metadata; audio for supervisors (audited)",
            },
            {
                "name": "callbacks",
                "description": "Abandoned and silent calls to call back; callback attempts",
            },
            {"name": "stats", "description": "Service levels (NENA / EU 112 figures)"},
            {
                "name": "reports",
                "description": "Incidents by category, classification, agency, kecamatan, hour",
            },
            {"name": "events", "description": "Live event stream (SSE)"},
            {
                "name": "aml",
                "description": "Advanced Mobile Location: signed receivers (HMAC, outside /v1) "
                "and unmatched messages",
            },
            {"name": "health", "description": "Probes for load balancers and supervisors"},
        ],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.event_hub = event_hub
    app.state.metrics = metrics
    # None without telephony (`serve --api-only`): session actions answer 503.
    app.state.call_control = call_control
    # Where webhooks may go (checked when set, and again at every delivery).
    app.state.outbound = outbound_policy(settings)
    app.state.find_console_session = SessionCache(
        functools.partial(_find_console_session, settings=settings.console),
        ttl_s=settings.console.session_cache_s,
    )
    app.state.queue_snapshot = QueueSnapshot(max_age_s=settings.api.queue_snapshot_s)
    app.state.auth_limiter = AuthFailureLimiter(
        max_failures=settings.api.auth_failures_max, window_s=settings.api.auth_failures_window_s
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ConsoleHeadersMiddleware, tile_url=settings.console.tile_url)
    app.add_middleware(ConsoleCompressionMiddleware)

    v1 = APIRouter(prefix="/v1")
    v1.include_router(incidents_router)
    v1.include_router(duplicates_router)
    v1.include_router(locations_router)
    v1.include_router(call_detail_router)
    v1.include_router(callcontrol_router)
    v1.include_router(recordings_router)
    v1.include_router(callbacks_router)
    v1.include_router(agencies_router)
    v1.include_router(operators_router)
    v1.include_router(queue_router)
    v1.include_router(stats_router)
    v1.include_router(reports_router)
    v1.include_router(callers_router)
    v1.include_router(events_router)
    v1.include_router(dispatch_router)
    v1.include_router(aml_unmatched_router)
    v1.include_router(flags_router)
    app.include_router(v1)
    # AML senders authenticate by HMAC per message, not by API key.
    app.include_router(aml_router)
    app.webhooks.include_router(dispatch_webhook_docs)
    # The operator console: page shells and static files; the pages use /v1 like any client.
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(console_router)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Database (and AMI, when serving) reachable")
    async def readyz() -> JSONResponse:
        components: dict[str, Any] = {}
        ready = True
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            components["database"] = {"ready": True}
        except Exception as exc:  # any failure means not ready; say which
            log.warning("readiness: database unreachable: %s", type(exc).__name__)
            components["database"] = {"ready": False, "detail": type(exc).__name__}
            ready = False
        for name, check in checks.items():
            ok, detail = await check()
            components[name] = {"ready": ok, "detail": detail}
            ready = ready and ok
        return JSONResponse(
            {"ready": ready, "components": components}, status_code=200 if ready else 503
        )

    if metrics is not None:

        @app.get(
            "/metrics",
            tags=["health"],
            response_class=PlainTextResponse,
            summary="Counters and latencies in Prometheus text format",
        )
        async def metrics_text(request: Request) -> str:
            source = request.client.host if request.client is not None else ""
            if not address_in(source, settings.api.metrics_allowed_networks):
                raise Forbidden(METRICS_FORBIDDEN)
            return metrics.render()

    return app


async def _find_console_session(
    session: AsyncSession, token: str, *, settings: ConsoleSettings
) -> SessionUser | None:
    return await find_session(session=session, token=token, settings=settings)
