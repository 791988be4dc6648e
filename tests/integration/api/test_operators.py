"""Operators through the API: the SIP account Asterisk reads (PJSIP realtime rows, md5 digest
only), the password shown once, disable/delete taking the account away, queue sessions sent
through the call-control protocol, and who may do what."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.callcontrol.protocol import CallControlError, QueueEntryState, QueueMemberState
from siaga112.config import Settings
from siaga112.operators.models import PsAor, PsAuth, PsEndpoint
from siaga112.operators.service import QueueTarget, reapply_sessions
from tests.conftest import auth, operator_key


class FakeControl:
    """Keeps queue members the way app_queue would: per queue."""

    def __init__(self) -> None:
        self.queues: dict[str, dict[str, QueueMemberState]] = {}
        self.fail = False
        self.reloads = 0
        self.entries: list[QueueEntryState] = []
        self.actions: list[tuple[str, ...]] = []
        self.originated: list[dict[str, Any]] = []

    async def queue_add(self, *, queue: str, interface: str, member_name: str) -> None:
        if self.fail:
            raise CallControlError("QueueAdd failed: no AMI")
        self.queues.setdefault(queue, {})[interface] = QueueMemberState(
            queue, interface, member_name, "not_in_use", False, "", False
        )

    async def queue_remove(self, *, queue: str, interface: str) -> None:
        self.queues.get(queue, {}).pop(interface, None)

    async def queue_pause(self, *, queue: str, interface: str, paused: bool, reason: str) -> None:
        m = self.queues[queue][interface]
        self.queues[queue][interface] = QueueMemberState(
            queue, interface, m.name, m.device, paused, reason, False
        )

    async def queue_members(self, *, queue: str) -> list[QueueMemberState]:
        return list(self.queues.get(queue, {}).values())

    @property
    def members(self) -> dict[str, QueueMemberState]:
        """The main queue's members."""
        return self.queues.get("emergency", {})

    def membership(self) -> dict[str, set[str]]:
        """Interface -> the queues it is a member of."""
        out: dict[str, set[str]] = {}
        for queue, members in self.queues.items():
            for iface in members:
                out.setdefault(iface, set()).add(queue)
        return out

    async def queue_entries(self) -> list[QueueEntryState]:
        return list(self.entries)

    async def hangup(self, *, channel: str, node: str | None = None) -> None:
        self.actions.append(("hangup", channel))

    async def redirect(
        self, *, channel: str, context: str, exten: str, node: str | None = None
    ) -> None:
        if self.fail:
            raise CallControlError("Redirect failed: No such channel")
        self.actions.append(("redirect", channel, context, exten))

    async def reload_sip_accounts(self) -> None:
        if self.fail:
            raise CallControlError("Reload failed: no AMI")
        self.reloads += 1

    async def originate(
        self,
        *,
        endpoint: str,
        context: str,
        exten: str,
        caller_id: str,
        ring_s: int,
        channel_id: str,
        variables: Mapping[str, str],
    ) -> None:
        if self.fail:
            raise CallControlError("Originate failed: no AMI")
        self.originated.append(
            {
                "endpoint": endpoint,
                "context": context,
                "exten": exten,
                "caller_id": caller_id,
                "ring_s": ring_s,
                "channel_id": channel_id,
                "variables": dict(variables),
            }
        )


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def api(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    control: FakeControl,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker, call_control=control)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c


async def test_created_operator_gets_realtime_sip_account_with_md5_only(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    r = await api.post(
        "/v1/operators",
        headers=auth(keys[Role.SUPERVISOR]),
        json={"extension": "7101", "name": "Siti"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    password = body["sip"]["password"]
    assert len(password) >= 20
    assert body["sip"]["username"] == "7101"
    assert control.reloads == 1
    async with sessionmaker() as session:
        endpoint = await session.get(PsEndpoint, "7101")
        auth_row = await session.get(PsAuth, "7101")
        aor = await session.get(PsAor, "7101")
        audit = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "operator.create", AuditEvent.entity_id == "7101"
            )
        )
    assert endpoint is not None
    assert (endpoint.auth, endpoint.aors) == ("7101", "7101")
    assert aor is not None
    assert aor.max_contacts == 1
    assert auth_row is not None
    assert auth_row.auth_type == "md5"
    digest = hashlib.md5(f"7101:asterisk:{password}".encode()).hexdigest()  # noqa: S324
    assert auth_row.md5_cred == digest
    assert audit is not None
    # Shown once: never again.
    r = await api.get("/v1/operators/7101", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200
    assert "sip" not in r.json()
    assert password not in r.text
    assert r.json()["state"] == "logged_out"


async def test_operator_role_cannot_create_and_duplicates_and_static_extensions_conflict(
    api: httpx.AsyncClient, keys: dict[Role, str], settings: Settings
) -> None:
    new = {"extension": "7102", "name": "Budi"}
    r = await api.post("/v1/operators", headers=auth(keys[Role.OPERATOR]), json=new)
    assert r.status_code == 403
    h = auth(keys[Role.ADMIN])
    assert (await api.post("/v1/operators", headers=h, json=new)).status_code == 201
    r = await api.post("/v1/operators", headers=h, json=new)
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    static = {"extension": settings.pbx.demo_operators[0], "name": "Demo"}
    assert (await api.post("/v1/operators", headers=h, json=static)).status_code == 409
    bad = {"extension": "abc", "name": "X"}
    assert (await api.post("/v1/operators", headers=h, json=bad)).status_code == 422


async def test_login_pause_resume_logout_drive_the_queue_and_state(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    # Operator 7103's own key.
    op = auth(await operator_key(sessionmaker, "7103"))
    await api.post("/v1/operators", headers=sup, json={"extension": "7103", "name": "Ani"})
    r = await api.post("/v1/operators/7103/login", headers=op)
    assert r.status_code == 200, r.text
    assert (r.json()["logged_in"], r.json()["state"]) == (True, "idle")
    # Both queues: the main one and the flagged numbers' low-priority one.
    assert control.membership() == {"PJSIP/7103": {"emergency", "emergency-low"}}
    r = await api.post("/v1/operators/7103/pause", headers=op, json={"reason": "break"})
    assert (r.json()["state"], r.json()["pause_reason"]) == ("paused", "break")
    for queue in ("emergency", "emergency-low"):
        assert control.queues[queue]["PJSIP/7103"].pause_reason == "break"
    r = await api.post("/v1/operators/7103/resume", headers=op)
    assert (r.json()["state"], r.json()["paused"]) == ("idle", False)
    assert not control.queues["emergency-low"]["PJSIP/7103"].paused
    r = await api.get("/v1/operators", headers=op)
    assert [o["state"] for o in r.json() if o["extension"] == "7103"] == ["idle"]
    r = await api.post("/v1/operators/7103/logout", headers=op)
    assert (r.json()["logged_in"], r.json()["state"]) == (False, "logged_out")
    assert control.membership() == {}


async def test_pause_needs_login_and_asterisk_failure_changes_nothing(
    api: httpx.AsyncClient, keys: dict[Role, str], control: FakeControl
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    await api.post("/v1/operators", headers=sup, json={"extension": "7104", "name": "Dewi"})
    r = await api.post("/v1/operators/7104/pause", headers=sup, json={"reason": "break"})
    assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")
    control.fail = True
    r = await api.post("/v1/operators/7104/login", headers=sup)
    assert (r.status_code, r.json()["code"]) == (503, "telephony_unavailable")
    r = await api.get("/v1/operators/7104", headers=sup)
    assert r.json()["logged_in"] is False


async def test_disable_removes_endpoint_and_membership_delete_removes_account(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    await api.post("/v1/operators", headers=sup, json={"extension": "7105", "name": "Eko"})
    await api.post("/v1/operators/7105/login", headers=sup)
    r = await api.patch("/v1/operators/7105", headers=sup, json={"enabled": False})
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["logged_in"]) == (False, False)
    assert control.membership() == {}
    async with sessionmaker() as session:
        assert await session.get(PsEndpoint, "7105") is None
    r = await api.post("/v1/operators/7105/login", headers=sup)
    assert r.status_code == 409
    r = await api.patch("/v1/operators/7105", headers=sup, json={"enabled": True})
    assert r.json()["enabled"] is True
    async with sessionmaker() as session:
        assert await session.get(PsEndpoint, "7105") is not None
    assert (await api.delete("/v1/operators/7105", headers=sup)).status_code == 204
    assert (await api.get("/v1/operators/7105", headers=sup)).status_code == 404
    async with sessionmaker() as session:
        assert await session.get(PsAuth, "7105") is None
        assert await session.get(PsEndpoint, "7105") is None


async def test_without_telephony_state_is_null_and_sessions_are_unavailable(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    await client.post("/v1/operators", headers=sup, json={"extension": "7106", "name": "Fajar"})
    r = await client.get("/v1/operators/7106", headers=sup)
    assert r.json()["state"] is None
    r = await client.post("/v1/operators/7106/login", headers=sup)
    assert r.status_code == 503


async def test_after_an_asterisk_restart_logged_in_operators_are_reapplied(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    for ext in ("7107", "7108", "7109"):
        await api.post("/v1/operators", headers=sup, json={"extension": ext, "name": ext})
    await api.post("/v1/operators/7107/login", headers=sup)
    await api.post("/v1/operators/7108/login", headers=sup)
    await api.post("/v1/operators/7108/pause", headers=sup, json={"reason": "training"})
    control.queues.clear()  # Asterisk restarted: dynamic members are gone
    target = QueueTarget(queues=("emergency", "emergency-low"), static_extensions=frozenset())
    async with sessionmaker() as session:
        count = await reapply_sessions(session=session, control=control, target=target)
    assert count == 2
    both = {"emergency", "emergency-low"}
    assert control.membership() == {"PJSIP/7107": both, "PJSIP/7108": both}
    for queue in both:
        assert control.queues[queue]["PJSIP/7108"].paused
        assert control.queues[queue]["PJSIP/7108"].pause_reason == "training"


async def test_operator_key_acts_only_as_its_own_operator(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    for ext, name in (("7105", "Eka"), ("7106", "Fajar")):
        await api.post("/v1/operators", headers=sup, json={"extension": ext, "name": name})
    own = auth(await operator_key(sessionmaker, "7105"))
    unbound = auth(await operator_key(sessionmaker, None))
    for action in ("login", "logout", "resume"):
        r = await api.post(f"/v1/operators/7106/{action}", headers=own)
        assert (r.status_code, r.json()["code"]) == (403, "not_own_operator"), action
        r = await api.post(f"/v1/operators/7105/{action}", headers=unbound)
        assert (r.status_code, r.json()["code"]) == (403, "operator_key_unbound"), action
    r = await api.post("/v1/operators/7106/pause", headers=own, json={"reason": "break"})
    assert (r.status_code, r.json()["code"]) == (403, "not_own_operator")
    assert control.membership() == {}
    # A supervisor acts for another operator, and the audit row says so.
    r = await api.post("/v1/operators/7106/login", headers=sup)
    assert r.status_code == 200, r.text
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.entity_id == "7106", AuditEvent.action.like("operator.log%")
                )
            )
        ).all()
    assert [(a.action, (a.after or {}).get("acting_for_operator")) for a in rows] == [
        ("operator.login", "7106")
    ]
    assert (rows[0].after or {})["actor_role"] == "supervisor"
    # Its own session: no such mark.
    assert (await api.post("/v1/operators/7105/login", headers=own)).status_code == 200
    async with sessionmaker() as session:
        mine = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.entity_id == "7105", AuditEvent.action == "operator.login"
            )
        )
    assert mine is not None
    assert "acting_for_operator" not in (mine.after or {})
