"""siaga112's processes end together and follow each PBX's events once: a worker started by
`siaga112 serve` ends with it however serve ends (SIGTERM, kill -9), and of several processes
that want to follow the same AMI event stream exactly one does at a time, the next taking over
when it dies. Real processes, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.db.session import asyncpg_dsn
from siaga112.metrics import Metrics
from siaga112.runtime.lease import Lease
from siaga112_sandbox import procs


@pytest.fixture
def serve_api_only(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`siaga112 serve --api-only` (it starts its worker) on free ports, against the tests'
    database, its worker at work; killed at the end whatever the test did."""
    with procs.serve(database_url, tmp_path / "state", worker_ready=True) as running:
        yield running.proc, running.port


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_serves_worker_ends_with_serve(
    serve_api_only: tuple[subprocess.Popen[bytes], int], how: signal.Signals
) -> None:
    proc, _ = serve_api_only
    workers = procs.children(proc.pid)
    assert workers
    proc.send_signal(how)
    proc.wait(20)
    for pid in workers:
        procs.wait_until(
            partial(procs.dead, pid),
            10,
            f"worker {pid} ending after serve got {how.name}",
        )


async def test_one_follower_at_a_time_and_the_next_takes_over(database_url: str) -> None:
    dsn = asyncpg_dsn(database_url)
    running: list[str] = []
    stopped: list[str] = []

    def lease(who: str) -> Lease[str]:
        async def start() -> str:
            running.append(who)
            return who

        async def stop(thing: str) -> None:
            running.remove(thing)
            stopped.append(thing)

        return Lease(
            dsn=dsn, name="test:ami-events", start=start, stop=stop, metrics=Metrics(),
            retry_s=0.2, check_s=0.2,
        )  # fmt: skip

    first, second = lease("first"), lease("second")
    t1 = asyncio.create_task(first.run())
    for _ in range(50):
        if running:
            break
        await asyncio.sleep(0.05)
    t2 = asyncio.create_task(second.run())
    await asyncio.sleep(1.0)
    assert running == ["first"], "the second must wait while the first holds the lease"
    t1.cancel()
    await asyncio.gather(t1, return_exceptions=True)
    assert stopped == ["first"]
    for _ in range(40):
        if running == ["second"]:
            break
        await asyncio.sleep(0.05)
    assert running == ["second"], "the second takes over once the first is gone"
    t2.cancel()
    await asyncio.gather(t2, return_exceptions=True)
    assert running == []


async def test_a_standby_is_built_while_it_waits_and_is_granted_the_lease_without_polling(
    database_url: str,
) -> None:
    dsn = asyncpg_dsn(database_url)
    events: list[str] = []

    def lease(who: str) -> Lease[str]:
        async def prepare() -> None:
            events.append(f"{who} prepared")

        async def start() -> str:
            events.append(f"{who} started")
            return who

        async def stop(_: str) -> None:
            events.append(f"{who} stopped")

        # A retry far longer than the test: only the server's grant can hand the lease over.
        return Lease(
            dsn=dsn, name="test:standby", start=start, stop=stop, prepare=prepare,
            metrics=Metrics(), retry_s=600, check_s=0.2,
        )  # fmt: skip

    t1 = asyncio.create_task(lease("first").run())
    for _ in range(50):
        if events:
            break
        await asyncio.sleep(0.05)
    t2 = asyncio.create_task(lease("second").run())
    for _ in range(50):
        if "second prepared" in events:
            break
        await asyncio.sleep(0.05)
    assert events == ["first started", "second prepared"]
    t1.cancel()
    await asyncio.gather(t1, return_exceptions=True)
    for _ in range(100):
        if events[-1] == "second started":
            break
        await asyncio.sleep(0.05)
    assert events == ["first started", "second prepared", "first stopped", "second started"]
    t2.cancel()
    await asyncio.gather(t2, return_exceptions=True)


async def test_a_holder_whose_session_is_cut_stops_following(database_url: str) -> None:
    dsn = asyncpg_dsn(database_url)
    events: list[str] = []

    async def start() -> str:
        events.append("start")
        return "x"

    async def stop(_: str) -> None:
        events.append("stop")

    lease = Lease(
        dsn=dsn, name="test:cut", start=start, stop=stop, metrics=Metrics(),
        retry_s=0.2, check_s=0.2,
    )  # fmt: skip
    task = asyncio.create_task(lease.run())
    try:
        for _ in range(50):
            if events:
                break
            await asyncio.sleep(0.05)
        assert events == ["start"]
        admin = await asyncpg.connect(dsn)
        try:
            # What a PostgreSQL restart does to the holder's session.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                " AND objid = ($1::bigint & x'ffffffff'::bigint)::oid",
                lease.key,
            )
        finally:
            await admin.close()
        for _ in range(60):
            if events[-2:] == ["stop", "start"]:
                break
            await asyncio.sleep(0.05)
        assert events[:2] == ["start", "stop"], events
        assert events[-1] == "start", "it takes the lease again once the database answers"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_serve_stops_on_sigterm_while_a_console_follows_the_event_stream(
    serve_api_only: tuple[subprocess.Popen[bytes], int], database_url: str
) -> None:
    """An open event stream is a response that never ends by itself: serve must end it, not
    wait for it, when told to stop (bench/drill: serve was still running 30 s after SIGTERM)."""
    proc, port = serve_api_only
    engine = create_async_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            key = await create_key(
                session=session,
                name="test-stream-stop",
                role=Role.INTEGRATOR,
                actor=system_actor("tests"),
            )
            await session.commit()
    finally:
        await engine.dispose()
    headers = {"Authorization": f"Bearer {key.raw}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=httpx.Timeout(5, read=30)
    ) as client:
        async with client.stream("GET", "/v1/events/stream") as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            while await anext(lines) != ": connected":
                pass
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            async for _ in lines:  # the stream ends
                pass
        # A console reconnecting at once, on its kept-alive connection, is not held either.
        with contextlib.suppress(httpx.HTTPError):
            async with client.stream("GET", "/v1/events/stream") as again:
                assert again.status_code == 503
        code = await asyncio.to_thread(proc.wait, 15)
    assert code == 0
    assert time.monotonic() - started < 8
