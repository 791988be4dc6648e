"""An open event stream lives only as long as its key: revoked or expired, the stream says
`stream_end` and closes within seconds (the key is re-checked every
SIAGA112_API__STREAM_KEY_CHECK_S, 2 s by default), on a real HTTP server."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from siaga112.auth.models import ApiKey
from siaga112.auth.service import revoke_key, system_actor
from tests.integration.events.conftest import Server, open_stream


async def _ends_within(server: Server, change: object, within_s: float) -> float:
    async with server.client() as client, open_stream(client) as it:
        assert "connected" in await it.next()
        started = time.monotonic()
        async with server.sessionmaker() as session:
            if change == "revoke":
                await revoke_key(
                    session=session, key_id=uuid.UUID(server.key_id), actor=system_actor("tests")
                )
            else:
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == uuid.UUID(server.key_id))
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
            await session.commit()
        end = await it.next_event(within_s=within_s)
        took = time.monotonic() - started
        assert end["event"] == "stream_end"
        assert end["data"] == {"reason": "key_revoked_or_expired"}
        # And the server closes the response: the reader task finishes by itself.
        await asyncio.wait_for(asyncio.shield(it._task), 2)
    async with server.client() as client:
        r = await client.get("/v1/events/stream")
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    return took


async def test_revoked_key_ends_its_open_stream_within_seconds(server: Server) -> None:
    assert await _ends_within(server, "revoke", within_s=5) < 4.5


async def test_expired_key_ends_its_open_stream_within_seconds(server: Server) -> None:
    assert await _ends_within(server, "expire", within_s=5) < 4.5
