"""Where webhooks may go: internal addresses and plain http are refused when the URL is set
(422 `destination_refused`) and again at every delivery (DNS answers change); the request goes
to the address that was checked while keeping the name in Host."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from siaga112.auth.roles import Role
from siaga112.dispatch.models import Dispatch, WebhookOutbox
from siaga112.net import CheckedTarget, OutboundPolicy, pinned_client
from tests.conftest import auth
from tests.integration.dispatch.conftest import World, until


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:5432/", "http_not_allowed"),
        ("https://127.0.0.1:5432/", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://localhost:8112/hook", "loopback"),
        ("https://10.0.0.5/hook", "private"),
        ("https://192.168.1.10/hook", "private"),
        ("https://169.254.169.254/latest", "link_local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://[::ffff:10.0.0.1]/hook", "private"),
        ("https://user:pw@damkar.example.invalid/hook", "invalid_url"),
    ],
)
async def test_internal_or_plain_http_webhook_urls_are_refused_when_set(
    client: httpx.AsyncClient, keys: dict[Role, str], url: str, reason: str
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    damkar = next(
        a for a in (await client.get("/v1/agencies", headers=sup)).json() if a["code"] == "damkar"
    )
    path = f"/v1/agencies/{damkar['id']}/dispatch-settings"
    before = (await client.get(path, headers=sup)).json()
    r = await client.put(path, headers=sup, json={"webhook_url": url})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "destination_refused"
    assert r.json()["details"][0]["reason"] == reason
    assert (await client.get(path, headers=sup)).json() == before


async def test_delivery_refuses_a_url_that_now_points_inside(world: World) -> None:
    """Set while allowed (or resolving elsewhere); at delivery the policy says no: nothing is
    sent and the outbox says why."""
    code, _ = await world.agency("bpbd")
    strict = OutboundPolicy(allow_http=True)
    worker = world.worker()
    worker.outbound = strict
    await worker.start()
    incident = await world.incident(summary="Banjir")
    r = await world.client.post(
        f"/v1/incidents/{incident}/dispatches", headers=world.supervisor, json={"agencies": [code]}
    )
    assert r.status_code == 201, r.text

    async def refused() -> bool:
        async with world.sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(WebhookOutbox)
                    .join(Dispatch, Dispatch.id == WebhookOutbox.dispatch_id)
                    .where(Dispatch.incident_id == incident)
                )
            ).all()
            return bool(rows) and all(
                row.last_error == "destination refused: loopback" for row in rows
            )

    await until(refused, what="delivery refused")
    assert world.receiver.received == []
    assert world.metrics.counters["webhook_destination_refused"] >= 1


async def test_request_goes_to_the_checked_address_with_the_name_in_host(world: World) -> None:
    """A name that resolves nowhere: the connection still reaches the checked address, and
    the receiver sees the name (what TLS SNI also carries for https)."""
    port = world.receiver.port
    url = f"http://agency.example.invalid:{port}/pinned"
    target = CheckedTarget(
        url=url, scheme="http", host="agency.example.invalid", port=port, address="127.0.0.1"
    )
    async with pinned_client(target) as c:
        r = await c.post(url, content=b"{}")
    assert r.status_code == 200
    assert world.receiver.received[-1].headers["host"] == f"agency.example.invalid:{port}"
