"""The location worker finds calls whose locations were not derived yet, by itself (the AGI
step only records the call), derives each once, and backs off a call whose derivation keeps
failing; `siaga112 worker` does it as a process of its own, with its own /metrics; and
`siaga112 serve`'s supervisor starts it again whenever it ends."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import siaga112.locations.worker as worker_module
from siaga112.calls.models import Call
from siaga112.cli import main
from siaga112.config import AmiSettings, Settings
from siaga112.locations.models import Location
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from siaga112.worker import WorkerProcess, parse_duties
from siaga112_sandbox.procs import free_port
from tests.conftest import fresh_database
from tests.integration.locations.conftest import record_call

Sessions = async_sessionmaker[AsyncSession]
# What Asterisk's res_geolocation made of a PIDF-LO Circle (GEOLOC_PROFILE(effective_location)).
EFFECTIVE = 'shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"'


def _settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={"ami": AmiSettings(secret=SecretStr("test")), "state_dir": tmp_path}
    )


async def _locations(sessionmaker: Sessions, call_id: uuid.UUID) -> list[Location]:
    async with sessionmaker() as session:
        return list(
            (await session.scalars(select(Location).where(Location.call_id == call_id))).all()
        )


async def test_a_recorded_call_is_located_by_the_sweep_once(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    async with sessionmaker() as session:
        recorded = await record_call(
            session, f"w-{uuid.uuid4().hex[:8]}", pani=None, geoloc_effective=EFFECTIVE
        )
        await session.commit()
    worker = LocationWorker(
        settings=_settings(settings, tmp_path), sessionmaker=sessionmaker, metrics=Metrics()
    )
    assert await worker.sweep(grace=timedelta(0)) >= 1
    (location,) = await _locations(sessionmaker, recorded.call_id)
    assert (location.source, location.lat, location.lon, location.radius_m) == (
        "pidf_lo",
        -6.28211,
        106.97432,
        35.0,
    )
    async with sessionmaker() as session:
        call = await session.get(Call, recorded.call_id)
        assert call is not None
        assert call.locations_done_at is not None
    # Done: the next sweeps leave it alone.
    await worker.sweep(grace=timedelta(0))
    assert len(await _locations(sessionmaker, recorded.call_id)) == 1


async def test_a_call_younger_than_the_grace_is_left_to_its_own_task(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    async with sessionmaker() as session:
        recorded = await record_call(
            session, f"w-{uuid.uuid4().hex[:8]}", pani=None, geoloc_effective=EFFECTIVE
        )
        await session.commit()
    worker = LocationWorker(
        settings=_settings(settings, tmp_path), sessionmaker=sessionmaker, metrics=Metrics()
    )
    await worker.sweep(grace=timedelta(seconds=60))
    assert await _locations(sessionmaker, recorded.call_id) == []


async def test_a_failing_call_is_tried_again_later_not_at_every_poll(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with sessionmaker() as session:
        recorded = await record_call(
            session, f"w-{uuid.uuid4().hex[:8]}", pani=None, geoloc_effective=EFFECTIVE
        )
        await session.commit()
    tries: list[uuid.UUID] = []

    async def broken(**kwargs: object) -> None:
        tries.append(kwargs["call_id"])  # type: ignore[arg-type]
        raise RuntimeError("cell table unreadable")

    monkeypatch.setattr(worker_module, "locations_for_call", broken)
    metrics = Metrics()
    worker = LocationWorker(
        settings=_settings(settings, tmp_path), sessionmaker=sessionmaker, metrics=metrics
    )
    await worker.sweep(grace=timedelta(0))
    await worker.sweep(grace=timedelta(0))
    assert tries.count(recorded.call_id) == 1, "backed off after the first failure"
    assert metrics.counters["location_failures"] >= 1
    monkeypatch.undo()
    await asyncio.sleep(1.1)  # the first back-off is one second
    await worker.sweep(grace=timedelta(0))
    assert len(await _locations(sessionmaker, recorded.call_id)) == 1


@pytest.fixture
def scratch_url() -> Iterator[str]:
    # The worker process sees only committed rows: a database of its own, not the tests'.
    yield from fresh_database("worker")


async def test_siaga112_worker_process_locates_calls_and_serves_metrics(
    scratch_url: str, tmp_path: Path
) -> None:
    engine = create_async_engine(scratch_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    port = free_port()
    env = {
        "SIAGA112_DATABASE_URL": scratch_url,
        "SIAGA112_WORKER__PORT": str(port),
        "SIAGA112_LOCATIONS__WORKER_POLL_S": "0.1",
        "SIAGA112_STATE_DIR": str(tmp_path / "state"),
        "SIAGA112_CACHE_DIR": str(tmp_path / "cache"),
        "SIAGA112_PBX__RECORDINGS_PATH": str(tmp_path / "recordings"),
        "PATH": "/usr/bin:/bin",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "siaga112",
        "worker",
        "--no-telephony",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with sessions() as session:
            recorded = await record_call(
                session, f"p-{uuid.uuid4().hex[:8]}", pani=None, geoloc_effective=EFFECTIVE
            )
            await session.commit()
        found: list[Location] = []
        for _ in range(200):
            found = await _locations(sessions, recorded.call_id)
            if found:
                break
            await asyncio.sleep(0.1)
        assert process.returncode is None, "the worker runs on"
        assert [(x.source, x.radius_m) for x in found] == [("pidf_lo", 35.0)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            metrics = await client.get("/metrics")
            health = await client.get("/healthz")
        assert metrics.status_code == 200
        assert "locations_swept" in metrics.text
        assert health.status_code == 200
        # SIGTERM: a clean stop.
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await engine.dispose()
    output = (await process.stdout.read()).decode() if process.stdout else ""
    assert "Traceback" not in output, output


async def test_serves_supervisor_starts_the_worker_again_when_it_ends() -> None:
    metrics = Metrics()
    child = WorkerProcess(
        metrics=metrics,
        command=(sys.executable, "-c", "import sys; sys.exit(3)"),
        first_delay_s=0.05,
    )
    await child.start()
    for _ in range(200):
        if metrics.counters["worker_starts"] >= 3:
            break
        await asyncio.sleep(0.05)
    await child.stop()
    assert metrics.counters["worker_starts"] >= 3
    assert metrics.counters["worker_exits"] >= 2
    # Stopping ends a running child too.
    sleeper = WorkerProcess(
        metrics=Metrics(), command=(sys.executable, "-c", "import time; time.sleep(60)")
    )
    await sleeper.start()
    for _ in range(200):
        if sleeper.pid is not None:
            break
        await asyncio.sleep(0.02)
    pid = sleeper.pid
    assert pid is not None
    await sleeper.stop(within_s=5)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_worker_duties_are_a_choice_of_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_duties("recordings, events") == frozenset({"events", "recordings"})
    for bad in ("", "events,cooking", ","):
        with pytest.raises(ValueError, match="duties"):
            parse_duties(bad)
    assert main(["worker", "--duties", "cooking"]) == 2
    assert "duties" in capsys.readouterr().err


def test_serve_starts_one_worker_for_the_events_and_one_for_the_rest() -> None:
    events = WorkerProcess(metrics=Metrics(), duties=("events",))
    rest = WorkerProcess(
        metrics=Metrics(),
        telephony=False,
        duties=("locations", "recordings"),
        metrics_port=8114,
        nice=10,
    )
    assert events.command[-3:] == ("worker", "--duties", "events")
    assert rest.command[3:] == (
        "worker",
        "--duties",
        "locations,recordings",
        "--no-telephony",
        "--metrics-port",
        "8114",
        "--nice",
        "10",
    )
