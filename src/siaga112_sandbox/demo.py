"""`siaga112 demo call`: dials 112 through the real Asterisk with SIPp (sample caller ID and
LTE cell header) while a demo operator phone answers, then prints the incident it opened as the
running service's API returns it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

import siaga112.models  # noqa: F401 - every model mapped: an API key refers to agencies
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, revoke_key, system_actor
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.db.session import make_engine, make_sessionmaker
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SippOperator, pbx_unavailable_reason, run_caller

DEMO_CALLER = "+6281234567890"


async def _wait_for_incident(
    settings: Settings, *, since: datetime, anonymous: bool, within_s: float
) -> int | None:
    """The incident the demo call opened, once its call has ended (None if none came)."""
    engine = make_engine(settings)
    sessionmaker = make_sessionmaker(engine)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            async with sessionmaker() as session:
                stmt = select(Call).where(Call.offered_at >= since, Call.dialled_number == "112")
                if not anonymous:
                    stmt = stmt.where(Call.asserted_number.contains(DEMO_CALLER[1:]))
                call = await session.scalar(stmt.order_by(Call.offered_at.desc()).limit(1))
                if call is not None and call.incident_id and call.state in {"ended", "abandoned"}:
                    return call.incident_id
            await asyncio.sleep(0.5)
        return None
    finally:
        await engine.dispose()


async def _read_through_api(settings: Settings, incident_id: int) -> dict[str, Any]:
    """GET /v1/incidents/{id} from the running service, as an integrator would, with a key
    made for this one read and revoked right after (both audited)."""
    engine = make_engine(settings)
    sessionmaker = make_sessionmaker(engine)
    actor = system_actor("demo")
    try:
        async with sessionmaker() as session:
            key = await create_key(
                session=session,
                name="demo call (revoked after one read)",
                role=Role.INTEGRATOR,
                actor=actor,
            )
            await session.commit()
        try:
            url = f"http://{settings.api.host}:{settings.api.port}/v1/incidents/{incident_id}"
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(url, headers={"Authorization": f"Bearer {key.raw}"})
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        finally:
            async with sessionmaker() as session:
                await revoke_key(session=session, key_id=key.id, actor=actor)
                await session.commit()
    finally:
        await engine.dispose()


def demo_call(settings: Settings, *, anonymous: bool, hold_s: float) -> int:
    reason = pbx_unavailable_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    if not pbx.status(settings).running:
        print(
            "error: Asterisk is not running; start the stack with `make run` first", file=sys.stderr
        )
        return 2
    since = datetime.now(UTC)
    scenario = "caller-112-anonymous.xml" if anonymous else "caller-112.xml"
    print(
        f"operator 6001 (SIPp) registers and answers; calling 112 from "
        f"{'an anonymous caller' if anonymous else DEMO_CALLER} with an LTE cell header ..."
    )
    with SippOperator(settings, "6001"):
        result = run_caller(
            settings,
            scenario,
            caller=None if anonymous else DEMO_CALLER,
            hold_ms=int(hold_s * 1000),
            timeout=hold_s + 30,
        )
    if not result.ok:
        print(
            f"error: the call failed (SIPp exit {result.returncode})\n{result.output[-2000:]}",
            file=sys.stderr,
        )
        return 1
    incident_id = asyncio.run(
        _wait_for_incident(settings, since=since, anonymous=anonymous, within_s=15)
    )
    if incident_id is None:
        print(
            "error: the call went through Asterisk but siaga112 recorded no incident for it;"
            " is `siaga112 serve` running (make run)?",
            file=sys.stderr,
        )
        return 1
    try:
        detail = asyncio.run(_read_through_api(settings, incident_id))
    except httpx.HTTPError as exc:
        print(
            f"error: incident {incident_id} recorded, but the API did not answer: {exc}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(detail, indent=2, ensure_ascii=False))
    print(
        f"\nincident {incident_id}, as GET /v1/incidents/{incident_id} returned it: "
        f"curl -H 'Authorization: Bearer $KEY' http://{settings.api.host}:{settings.api.port}"
        f"/v1/incidents/{incident_id}",
        file=sys.stderr,
    )
    return 0
