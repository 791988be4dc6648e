"""`siaga112 serve`: the API, and with telephony the FastAGI server and AMI client, in one
event loop; background work that would slow them down runs in child `siaga112 worker`s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from siaga112.api.http_protocol import JsonErrorH11Protocol
from siaga112.app import ReadinessCheck, create_app
from siaga112.config import Settings
from siaga112.db.session import asyncpg_dsn, make_sessionmaker
from siaga112.dispatch.worker import DeliveryWorker
from siaga112.events.hub import EventHub
from siaga112.metrics import Metrics
from siaga112.runtime.process import StartupError, loop_factory, open_database
from siaga112.runtime.telephony import Telephony, TelephonyRole
from siaga112.worker import WorkerProcess

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM and SIGINT once it has stopped, which ended the process before
    serve's own cleanup ran, and its workers outlived it. Here a signal only asks the server to
    stop; serve then stops its workers and returns. Open event streams are ended first: the
    server waits for every response to finish, and a stream never does by itself."""

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def serve(
    settings: Settings,
    *,
    with_telephony: bool,
    spawn_worker: bool = True,
    call_control: bool = False,
) -> None:
    engine = await open_database(settings)
    sessionmaker = make_sessionmaker(engine)
    metrics = Metrics()
    telephony: Telephony | None = None
    readiness: dict[str, ReadinessCheck] = {}
    if with_telephony:
        # The AMI event stream is followed by `siaga112 worker` unless configured otherwise.
        role: TelephonyRole = "agi" if settings.ami.events_in == "worker" else "all"
        if role == "all" and len(settings.pbx_nodes) > 1:
            # serve's own loop follows one event stream; several nodes need the workers.
            raise StartupError(
                "SIAGA112_AMI__EVENTS_IN=serve follows one PBX node; with several "
                "(SIAGA112_PBX__NODES) leave it at `worker`"
            )
        telephony = Telephony(
            settings=settings, sessionmaker=sessionmaker, metrics=metrics, role=role
        )
        readiness = {"ami": telephony.readiness_ami, "agi": telephony.readiness_agi}
    elif call_control:
        # --api-only --call-control: no AGI server, no events; actions over AMI only.
        telephony = Telephony(
            settings=settings, sessionmaker=sessionmaker, metrics=metrics, role="control"
        )
        readiness = {"ami": telephony.readiness_ami}
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
        # The events worker at serve's own priority: the call progress it writes is what an
        # operator's screen pops on, and its CPU follows the call rate (it has no backlog to
        # hog a core with), so under a surge it should not wait behind consoles and browsers.
        # The locations and recordings one lower than serve (and Asterisk): the AGI step of
        # the next call matters more than a location a moment later.
        if with_telephony and settings.ami.events_in == "worker":
            children.append(WorkerProcess(metrics=metrics, duties=("events",)))
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
        # A request still running this long after a stop signal is cancelled.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        # Malformed HTTP answered in the API's JSON error shape (siaga112.api.http_protocol).
        http=JsonErrorH11Protocol,
    )
    server = _Server(config, on_exit=hub.end_streams)
    log.info(
        "API on http://%s:%d/v1 (telephony %s)",
        settings.api.host,
        settings.api.port,
        "on" if with_telephony else "call control only" if call_control else "off",
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
        # Side by side: each may take up to its stop timeout.
        await asyncio.gather(*(child.stop() for child in children))
        await worker.stop()
        if telephony is not None:
            await telephony.stop()
        await hub.stop()
        await engine.dispose()


def run_service(
    settings: Settings,
    *,
    with_telephony: bool,
    spawn_worker: bool = True,
    call_control: bool = False,
) -> int:
    try:
        with (
            contextlib.suppress(KeyboardInterrupt),
            asyncio.Runner(loop_factory=loop_factory()) as runner,
        ):
            runner.run(
                serve(
                    settings,
                    with_telephony=with_telephony,
                    spawn_worker=spawn_worker,
                    call_control=call_control,
                )
            )
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0
