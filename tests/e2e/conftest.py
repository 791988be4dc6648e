"""The real stack for end-to-end tests: the Asterisk sandbox with the rendered configuration,
siaga112's telephony side (FastAGI server, AMI link, tracker, reconciliation) in this event loop,
and the test database. SIPp places and answers the calls.

These tests need root (the Asterisk chroot), mmdebstrap and SIPp, which `make test` installs.
They fail rather than skip when those are missing, so that a green run always includes them;
set SIAGA112_SKIP_PBX_TESTS=1 to leave them out deliberately on a machine without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.config import PbxSettings, Settings
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from siaga112.runtime.telephony import Telephony
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SippOperator, pbx_unavailable_reason
from tests.conftest import asterisk_role, auth, engine_for, fresh_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.pbx)


# Real calls commit what they record (and the API through the real stack commits too), while
# the integration tests expect a database that holds only what each test wrote in its own
# rolled-back transaction: the e2e tests get a database of their own.
TESTS_CDR_FILE = "siaga112-cdr-tests.csv"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    yield from fresh_database("e2e")


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Calls placed by the tests go to a CDR file of their own: a development database that
    # reconciles the PBX's file (make run) never sees them.
    # Asterisk reads its realtime operators as a role that may read only the PJSIP tables,
    # siaga112 runs as one that may only read and write rows (tests.conftest.fresh_database).
    return Settings(
        database_url=database_url,
        pbx=PbxSettings(cdr_file_name=TESTS_CDR_FILE, db_user=asterisk_role(database_url)),
    )


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for eng in engine_for(database_url):
        yield eng


@pytest.fixture(scope="session")
def pbx_settings(settings: Settings) -> Iterator[Settings]:
    if os.environ.get("SIAGA112_SKIP_PBX_TESTS") == "1":
        pytest.skip("SIAGA112_SKIP_PBX_TESTS=1")
    reason = pbx_unavailable_reason()
    if reason is not None:
        pytest.fail(f"real-Asterisk tests cannot run: {reason}")
    pbx.up(settings)
    yield settings
    pbx.down(settings)


@dataclass
class Stack:
    """siaga112's side of the real stack: the telephony runtime, and the location worker as
    `siaga112 worker` runs it (here a task in this loop, not a process of its own)."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    telephony: Telephony | None = None
    locations: asyncio.Task[None] | None = None

    async def start(self, *, skip_history: bool = False) -> Telephony:
        metrics = Metrics()
        telephony = Telephony(
            settings=self.settings, sessionmaker=self.sessionmaker, metrics=metrics
        )
        if self.locations is None and self.settings.locations.derive_in == "worker":
            worker = LocationWorker(
                settings=self.settings, sessionmaker=self.sessionmaker, metrics=metrics
            )
            self.locations = asyncio.get_running_loop().create_task(worker.run(poll_s=0.1))
        if skip_history:
            # The PBX's CDR file holds calls from earlier runs: not this database's business.
            await telephony.reconciler.skip_to_end()
        await telephony.start()
        for _ in range(100):
            if telephony.ami.ready and telephony.agi.serving:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("siaga112 telephony did not become ready")
        self.telephony = telephony
        return telephony

    async def stop(self) -> None:
        """siaga112 down; the location worker too (tests of a stopped siaga112 expect none)."""
        if self.locations is not None:
            self.locations.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.locations
            self.locations = None
        if self.telephony is not None:
            await self.telephony.stop()
            self.telephony = None


@pytest.fixture
async def api(stack: Stack, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The API of this stack (real call control over AMI), with an admin key."""
    assert stack.telephony is not None
    app = create_app(
        stack.settings,
        engine=engine,
        sessionmaker=stack.sessionmaker,
        call_control=stack.telephony.control,
    )
    async with stack.sessionmaker() as session:
        key = await create_key(
            session=session, name="e2e-admin", role=Role.ADMIN, actor=system_actor("tests")
        )
        await session.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://siaga112.test", headers=auth(key.raw)
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def stack(pbx_settings: Settings, engine: AsyncEngine) -> AsyncIterator[Stack]:
    s = Stack(pbx_settings, async_sessionmaker(engine, expire_on_commit=False))
    await s.start(skip_history=True)
    yield s
    await s.stop()


@pytest.fixture
async def operator(stack: Stack) -> AsyncIterator[SippOperator]:
    """Demo operator 6001's phone (SIPp), registered with its digest credentials; answers."""
    op = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(op.start)
    yield op
    await asyncio.to_thread(op.stop)
