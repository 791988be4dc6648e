"""Fixtures for dispatch tests: agency keys in the rolled-back world, and a committed world
(real transactions, unique agencies, cleaned up afterwards) for the delivery worker, which
claims rows with SKIP LOCKED in transactions of its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.agencies.models import Agency
from siaga112.agencies.service import agency_ref
from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.models import ApiKey
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, hash_key, system_actor
from siaga112.config import DispatchSettings, OutboundSettings, Settings
from siaga112.dispatch.worker import DeliveryWorker
from siaga112.incidents.models import Incident
from siaga112.metrics import Metrics
from siaga112.net import OutboundPolicy, outbound_policy
from tests.conftest import auth
from tests.integration.dispatch.receiver import Receiver


async def make_key(
    sessionmaker: async_sessionmaker[AsyncSession], role: Role, agency: str | None = None
) -> str:
    async with sessionmaker() as session:
        created = await create_key(
            session=session,
            name=f"test-{agency or role.value}",
            role=role,
            actor=system_actor("tests"),
            agency=await agency_ref(session=session, code=agency) if agency else None,
        )
        await session.commit()
        return created.raw


async def until(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# The receiver listens on this host, over plain http: allowed explicitly, as an admin would.
LOCAL_RECEIVER = OutboundSettings(allowed_networks=["127.0.0.1/32"], allow_http=True)

FAST = DispatchSettings(
    webhook_timeout_s=0.5,
    claim_lease_s=1.0,
    retry_base_s=0.05,
    retry_max_s=0.2,
    poll_s=0.05,
    ack_timeout_s=3600,
)


@dataclass
class World:
    """Committed data: what the worker sees is what a running siaga112 would see."""

    sessionmaker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    receiver: Receiver
    supervisor: dict[str, str]
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    metrics: Metrics = field(default_factory=Metrics)
    agencies: dict[str, int] = field(default_factory=dict)
    incidents: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    workers: list[DeliveryWorker] = field(default_factory=list)

    def worker(self, **changes: Any) -> DeliveryWorker:
        w = DeliveryWorker(
            sessionmaker=self.sessionmaker,
            settings=FAST.model_copy(update=changes),
            metrics=self.metrics,
            outbound=self.outbound,
        )
        self.workers.append(w)
        return w

    async def agency(self, label: str, *, share_caller: bool = False) -> tuple[str, str]:
        """A new agency whose webhook is the receiver at /<code>; returns (code, secret)."""
        code = f"t_{label}_{uuid.uuid4().hex[:8]}"
        r = await self.client.post(
            "/v1/agencies",
            headers=self.supervisor,
            json={"code": code, "name": f"Test {label}", "kind": "other"},
        )
        assert r.status_code == 201, r.text
        self.agencies[code] = r.json()["id"]
        r = await self.client.put(
            f"/v1/agencies/{self.agencies[code]}/dispatch-settings",
            headers=self.supervisor,
            json={"webhook_url": self.receiver.url(f"/{code}"), "share_caller": share_caller},
        )
        assert r.status_code == 200, r.text
        secret = r.json()["webhook_secret"]
        assert secret
        self.receiver.secrets[f"/{code}"] = secret
        return code, secret

    async def agency_key(self, code: str) -> dict[str, str]:
        raw = await make_key(self.sessionmaker, Role.AGENCY, code)
        self.keys.append(raw)
        return auth(raw)

    async def incident(self, **fields: Any) -> int:
        body = {"channel": "walk_in", "category": "kecelakaan"} | fields
        r = await self.client.post("/v1/incidents", headers=self.supervisor, json=body)
        assert r.status_code == 201, r.text
        incident_id: int = r.json()["id"]
        self.incidents.append(incident_id)
        return incident_id


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


@pytest.fixture
async def world(
    settings: Settings, engine: AsyncEngine, owner_engine: AsyncEngine, receiver: Receiver
) -> AsyncIterator[World]:
    committed = async_sessionmaker(engine, expire_on_commit=False)
    async with committed() as session:
        audit_floor = (await session.scalar(select(func.max(AuditEvent.id)))) or 0
    settings = settings.model_copy(update={"outbound": LOCAL_RECEIVER})
    app = create_app(settings, engine=engine, sessionmaker=committed)
    supervisor_key = await make_key(committed, Role.SUPERVISOR)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://siaga112.test"
    ) as client:
        w = World(committed, client, receiver, auth(supervisor_key), outbound_policy(settings))
        w.keys.append(supervisor_key)
        try:
            yield w
        finally:
            for worker in w.workers:
                await worker.stop()
            async with committed() as session:
                # Incidents cascade to their timeline, dispatches and outbox messages.
                await session.execute(delete(Incident).where(Incident.id.in_(w.incidents)))
                await session.execute(
                    delete(ApiKey).where(ApiKey.key_hash.in_([hash_key(k) for k in w.keys]))
                )
                await session.execute(delete(Agency).where(Agency.id.in_(w.agencies.values())))
                await session.commit()
            # The audit trail is append-only for the service's role.
            async with owner_engine.begin() as conn:
                await conn.execute(delete(AuditEvent).where(AuditEvent.id > audit_floor))
