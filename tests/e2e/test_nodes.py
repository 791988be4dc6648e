"""Two Asterisk nodes behind Kamailio, with real calls: the carrier's calls spread over both
nodes, each call is one incident that knows its node, each node's AMI events are followed by
exactly one `siaga112 worker` process of two, and a node that dies stops getting calls.

The nodes run from the shared root on 127.0.0.11 and 127.0.0.12 (siaga112_sandbox.nodes),
Kamailio on 127.0.0.10; their AGI server is this test's, on a port of its own so that the
one-node sandbox of the other e2e tests can run beside them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.callbacks.service import list_callbacks
from siaga112.config import PbxNodeSettings, PbxSettings, Settings
from siaga112.db.session import asyncpg_dsn
from siaga112.metrics import Metrics
from siaga112.runtime.lease import lease_key
from siaga112.runtime.telephony import Telephony
from siaga112.worker import events_lease_name
from siaga112_sandbox.nodes import NodeSandbox, Proxy
from siaga112_sandbox.sipp import pbx_unavailable_reason, run_caller
from tests.e2e.conftest import TESTS_CDR_FILE

PROXY = "127.0.0.10"
NODES = [
    PbxNodeSettings(name="e2e-a", ami_host="127.0.0.11", sip_address="127.0.0.11"),
    PbxNodeSettings(name="e2e-b", ami_host="127.0.0.12", sip_address="127.0.0.12"),
]
AGI_PORT = 4583
# The workers' `pbx.node_lost_after_s`: short, so that a node's loss is taken within the test.
NODE_LOST_AFTER_S = 3.0


@dataclass
class Ha:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    nodes: dict[str, NodeSandbox]
    proxy: Proxy
    workers: list[subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def ha_settings(database_url: str) -> Settings:
    if os.environ.get("SIAGA112_SKIP_PBX_TESTS") == "1":
        pytest.skip("SIAGA112_SKIP_PBX_TESTS=1")
    reason = pbx_unavailable_reason()
    if reason is not None:
        pytest.fail(f"real-Asterisk tests cannot run: {reason}")
    base = Settings(database_url=database_url)
    return base.model_copy(
        update={
            "agi": base.agi.model_copy(update={"port": AGI_PORT}),
            "pbx": PbxSettings(
                cdr_file_name=TESTS_CDR_FILE,
                nodes=NODES,
                # Through the proxy the carrier's calls come from the proxy's address.
                carrier_addresses=["127.0.0.2", PROXY],
            ),
        }
    )


def _worker_env(settings: Settings, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAGA112_")}
    return env | {
        "SIAGA112_DATABASE_URL": database_url,
        "SIAGA112_STATE_DIR": str(settings.state_dir),
        "SIAGA112_AGI__PORT": str(AGI_PORT),
        "SIAGA112_PBX__CDR_FILE_NAME": TESTS_CDR_FILE,
        "SIAGA112_PBX__NODES": json.dumps([n.model_dump(mode="json") for n in NODES]),
        "SIAGA112_LOCATIONS__DERIVE_IN": "worker",
        "SIAGA112_PBX__NODE_LOST_AFTER_S": str(NODE_LOST_AFTER_S),
    }


def _start_worker(settings: Settings, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "siaga112", "worker", "--duties", "events",
             "--metrics-port", "0"],
            env=_worker_env(settings, database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def _dispatcher_list(proxy: Proxy) -> str:
    return subprocess.run(
        ["kamcmd", "-s", f"unix:{proxy.directory}/kamailio.ctl", "dispatcher.list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


@pytest.fixture(scope="module")
async def ha(
    ha_settings: Settings,
    engine: AsyncEngine,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Ha]:
    settings = ha_settings
    nodes = {n.name: NodeSandbox(settings, n) for n in settings.pbx_nodes}
    proxy = Proxy(settings, PROXY, settings.pbx_nodes)
    logs = tmp_path_factory.mktemp("ha")
    workers: list[subprocess.Popen[bytes]] = []
    telephony: Telephony | None = None
    try:
        for node in nodes.values():
            # One after the other: each start writes the shared root's prompts.
            await asyncio.to_thread(node.start)
        await asyncio.to_thread(proxy.start)
        # The AGI server and actions on both nodes, here; the events in two worker processes.
        telephony = Telephony(
            settings=settings,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
            metrics=Metrics(),
            role="agi",
        )
        await telephony.start()
        for i in range(2):
            workers.append(_start_worker(settings, database_url, logs / f"worker-{i}.log"))
        await _wait_for_followers(database_url, settings, within_s=30)
        yield Ha(
            settings=settings,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
            nodes=nodes,
            proxy=proxy,
            workers=workers,
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if telephony is not None:
            await telephony.stop()
        proxy.stop()
        for node in nodes.values():
            await asyncio.to_thread(node.stop)


async def _lease_holders(database_url: str, settings: Settings) -> dict[str, list[str]]:
    """Node -> application names of the sessions holding its lease."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        out: dict[str, list[str]] = {}
        for node in settings.pbx_nodes:
            key = lease_key(events_lease_name(settings, node))
            rows = await conn.fetch(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid = (($1::bigint >> 32) & x'ffffffff'::bigint)::oid"
                " AND l.objid = ($1::bigint & x'ffffffff'::bigint)::oid",
                key,
            )
            out[node.name] = [r["application_name"] for r in rows]
        return out
    finally:
        await conn.close()


async def _wait_for_followers(database_url: str, settings: Settings, *, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        holders = await _lease_holders(database_url, settings)
        if all(len(h) == 1 for h in holders.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no follower for every node: {holders}")
        await asyncio.sleep(0.2)


async def _calls_since(ha: Ha, since: datetime) -> list[tuple[str, str | None, int | None, str]]:
    async with ha.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT uniqueid, node, incident_id, state FROM calls"
                " WHERE offered_at >= :since AND dialled_number = '112' ORDER BY offered_at"
            ),
            {"since": since},
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


def _call(ha: Ha, *, calls: int, rate: float, hold_ms: int = 1000) -> None:
    result = run_caller(
        ha.settings,
        "caller-112-proxy.xml",
        target=f"{PROXY}:{ha.settings.pbx.sip_port}",
        caller="+6281299990001",
        calls=calls,
        rate=rate,
        hold_ms=hold_ms,
        timeout=30,
    )
    assert result.ok, result.output[-3000:]


async def test_calls_through_the_proxy_land_on_both_nodes_each_one_incident_with_its_node(
    ha: Ha, database_url: str
) -> None:
    since = datetime.now(UTC)
    await asyncio.to_thread(_call, ha, calls=6, rate=3)
    deadline = time.monotonic() + 20
    while True:
        rows = await _calls_since(ha, since)
        done = len(rows) == 6 and all(state in ("ended", "abandoned") for *_, state in rows)
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(rows) == 6, rows
    assert {node for _, node, _, _ in rows} == {"e2e-a", "e2e-b"}
    for uniqueid, node, incident_id, state in rows:
        # Asterisk's own id says the node: systemname-epoch.seq.
        assert uniqueid.startswith(f"{node}-"), (uniqueid, node)
        assert incident_id is not None
        # The node's follower saw the call end (its AMI events parsed with prefixed ids).
        assert state in ("ended", "abandoned"), (uniqueid, state)
    assert len({incident for _, _, incident, _ in rows}) == 6
    holders = await _lease_holders(database_url, ha.settings)
    assert all(len(h) == 1 for h in holders.values()), holders
    pids = {h[0] for h in holders.values()}
    worker_pids = {f"siaga112 lease pid {w.pid}" for w in ha.workers}
    assert pids <= worker_pids, (pids, worker_pids)


async def test_a_call_on_a_node_that_dies_ends_as_node_lost_on_the_callback_worklist(
    ha: Ha,
) -> None:
    """A caller waiting in the queue of a node whose Asterisk is killed: nothing of that node
    will ever end the call (no event, no CDR line), so its follower ends it as `node_lost` once
    the node's AMI session has been down `pbx.node_lost_after_s`, and the caller, who has a
    number, is on the callback worklist. The node is started again afterwards."""
    number = "+6281299990077"
    since = datetime.now(UTC)

    def long_call() -> None:
        # Cut by the kill: SIPp's own result does not matter (its BYE goes nowhere).
        run_caller(
            ha.settings,
            "caller-112-proxy.xml",
            target=f"{PROXY}:{ha.settings.pbx.sip_port}",
            caller=number,
            calls=1,
            hold_ms=15_000,
            timeout=25,
        )

    caller = asyncio.create_task(asyncio.to_thread(long_call))
    killed_node: str | None = None
    try:
        deadline = time.monotonic() + 15
        while True:
            rows = [r for r in await _calls_since(ha, since) if r[3] == "queued"]
            if rows or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert len(rows) == 1, await _calls_since(ha, since)
        uniqueid, node, incident_id, _ = rows[0]
        assert incident_id is not None
        assert node is not None
        killed_node = node
        ha.nodes[node].kill()
        killed = time.monotonic()
        deadline = killed + NODE_LOST_AFTER_S + 10
        while True:
            async with ha.sessionmaker() as session:
                call = (
                    await session.execute(
                        text("SELECT id, state, outcome, ended_at FROM calls WHERE uniqueid = :u"),
                        {"u": uniqueid},
                    )
                ).one()
            if call.outcome == "node_lost" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert (call.state, call.outcome) == ("abandoned", "node_lost"), call
        assert time.monotonic() - killed < NODE_LOST_AFTER_S + 5
        async with ha.sessionmaker() as session:
            page = await list_callbacks(
                session=session,
                status=None,
                reason=None,
                offered_from=since,
                offered_to=None,
                limit=50,
                cursor=None,
            )
            timeline = (
                (
                    await session.execute(
                        text(
                            "SELECT data FROM incident_events WHERE incident_id = :i"
                            " AND kind = 'call_abandoned'"
                        ),
                        {"i": incident_id},
                    )
                )
                .scalars()
                .all()
            )
        assert call.id in {item.call_id for item in page.items}, page.items
        assert [(d["outcome"], d["node"]) for d in timeline] == [("node_lost", node)]
    finally:
        await caller
        if killed_node is not None and not ha.nodes[killed_node].running:
            await asyncio.to_thread(ha.nodes[killed_node].start)
    # Back: the proxy's probes find it again before the next test.
    await _wait_for_node_active(ha, node)


async def _wait_for_node_active(ha: Ha, node: str, within_s: float = 30) -> None:
    """Until a call through the proxy can land on ``node`` again: Kamailio's probes see it."""
    deadline = time.monotonic() + within_s
    address = next(n.sip_address for n in ha.settings.pbx_nodes if n.name == node)
    while time.monotonic() < deadline:
        listing = await asyncio.to_thread(_dispatcher_list, ha.proxy)
        part = listing.split(f"sip:{address}:5060", 1)
        if len(part) == 2 and part[1].split("FLAGS:", 1)[1].split()[0].startswith("A"):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"node {node} not active in the proxy again")


async def test_a_node_that_dies_gets_no_new_calls_within_five_seconds(ha: Ha) -> None:
    ha.nodes["e2e-b"].kill()
    killed = time.monotonic()
    since = datetime.now(UTC)
    # Calls placed from the moment the node died until five seconds after.
    placed = 0
    while time.monotonic() - killed < 5:
        # Long enough to be past Answer() (it waits up to 0.5 s for media): a call cut inside
        # it is the CDR reconciliation's, every 30 s.
        await asyncio.to_thread(_call, ha, calls=1, rate=1, hold_ms=1500)
        placed += 1
    deadline = time.monotonic() + 15
    while True:
        rows = await _calls_since(ha, since)
        if len(rows) >= placed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(rows) == placed, rows
    assert {node for _, node, _, _ in rows} == {"e2e-a"}
    assert all(incident is not None for _, _, incident, _ in rows)
    # The proxy's probes have taken the dead node out by now.
    listing = await asyncio.to_thread(_dispatcher_list, ha.proxy)
    dead = listing.split("sip:127.0.0.12:5060", 1)[1].split("FLAGS:", 1)[1].split()[0]
    assert dead.startswith("I") or dead.startswith("D"), listing
