"""`siaga112 serve`: the API, and with telephony the FastAGI server and AMI client, in one
event loop; background work that would slow them down runs in child `siaga112 worker`s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.api.http_protocol import JsonErrorH11Protocol
from siaga112.app import ReadinessCheck, create_app
from siaga112.config import Settings
from siaga112.db.manage import UnknownRevision, pending_migrations
from siaga112.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from siaga112.dispatch.worker import DeliveryWorker
from siaga112.events.hub import EventHub
from siaga112.telephony.metrics import Metrics
from siaga112.telephony.runtime import Telephony, TelephonyRole
from siaga112.worker import WorkerProcess

log = logging.getLogger(__name__)


class StartupError(Exception):
    """siaga112 cannot serve: said in one line, no traceback."""


class SchemaNotCurrent(StartupError):
    pass


class DatabaseUnreachable(StartupError):
    pass


async def open_database(settings: Settings) -> AsyncEngine:
    """The engine, once the database is reachable and exactly at this code's migrations."""
    engine = make_engine(settings)
    try:
        pending = await pending_migrations(engine)
    except UnknownRevision as exc:
        await engine.dispose()
        raise SchemaNotCurrent(str(exc)) from exc
    except (OSError, DBAPIError) as exc:
        await engine.dispose()
        where = make_url(settings.database_url_str).render_as_string(hide_password=True)
        raise DatabaseUnreachable(
            f"PostgreSQL at {where} is not reachable ({type(exc).__name__}: {exc}); "
            "start it (make run does) or set SIAGA112_DATABASE_URL"
        ) from exc
    if pending:
        await engine.dispose()
        raise SchemaNotCurrent(
            f"the database lacks migrations {sorted(pending)}: run `siaga112 db upgrade`"
        )
    return engine


async def serve(settings: Settings, *, with_telephony: bool, spawn_worker: bool = True) -> None:
    engine = await open_database(settings)
    sessionmaker = make_sessionmaker(engine)
    metrics = Metrics()
    telephony: Telephony | None = None
    readiness: dict[str, ReadinessCheck] = {}
    if with_telephony:
        # The AMI event stream is followed by `siaga112 worker` unless configured otherwise.
        role: TelephonyRole = "agi" if settings.ami.events_in == "worker" else "all"
        telephony = Telephony(
            settings=settings, sessionmaker=sessionmaker, metrics=metrics, role=role
        )
        readiness = {"ami": telephony.readiness_ami, "agi": telephony.readiness_agi}
    hub = EventHub(
        dsn=asyncpg_dsn(settings.database_url_str), sessionmaker=sessionmaker, metrics=metrics
    )
    app = create_app(
        settings,
        engine=engine,
        sessionmaker=sessionmaker,
        readiness=readiness,
        metrics=metrics,
        event_hub=hub,
        call_control=telephony.control if telephony is not None else None,
    )
    # Webhook delivery to agencies runs with or without telephony (also --api-only).
    worker = DeliveryWorker(
        sessionmaker=sessionmaker,
        settings=settings.dispatch,
        metrics=metrics,
        outbound=app.state.outbound,
    )
    app.state.dispatch_worker = worker
    # Locations and recordings: a process of its own (siaga112.worker), off the AGI loop.
    children: list[WorkerProcess] = []
    if spawn_worker:
        # One process follows the AMI events, another does the rest: neither waits on the
        # other's work (siaga112.worker.DUTIES).
        # Both at a lower CPU priority than serve (and Asterisk): under a surge the AGI step
        # of the next call matters more than a location or a progress line a moment later.
        if with_telephony and settings.ami.events_in == "worker":
            children.append(WorkerProcess(metrics=metrics, duties=("events",), nice=5))
        children.append(
            WorkerProcess(
                metrics=metrics,
                telephony=with_telephony,
                duties=("locations", "recordings"),
                metrics_port=settings.worker.port + len(children),
                nice=10,
            )
        )
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        # Malformed HTTP answered in the API's JSON error shape (siaga112.api.http_protocol).
        http=JsonErrorH11Protocol,
    )
    server = uvicorn.Server(config)
    log.info(
        "API on http://%s:%d/v1 (telephony %s)",
        settings.api.host,
        settings.api.port,
        "on" if with_telephony else "off",
    )
    try:
        await hub.start()
        if telephony is not None:
            await telephony.start()
        await worker.start()
        for child in children:
            await child.start()
        await server.serve()
    finally:
        for child in children:
            await child.stop()
        await worker.stop()
        if telephony is not None:
            await telephony.stop()
        await hub.stop()
        await engine.dispose()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when available: the AGI hot path measured ~20% faster on it (DESIGN.md §3)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop.new_event_loop


def run_service(settings: Settings, *, with_telephony: bool, spawn_worker: bool = True) -> int:
    try:
        with (
            contextlib.suppress(KeyboardInterrupt),
            asyncio.Runner(loop_factory=loop_factory()) as runner,
        ):
            runner.run(serve(settings, with_telephony=with_telephony, spawn_worker=spawn_worker))
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0
