"""`siaga112 demo call`: dials 112 through the real Asterisk with SIPp (sample caller ID and
LTE cell header) while a demo operator phone answers, then prints the incident it opened."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import select

from siaga112.auth.service import system_actor
from siaga112.calls.models import Call
from siaga112.calls.schemas import CallOut
from siaga112.config import Settings
from siaga112.db.session import make_engine, make_sessionmaker
from siaga112.incidents.schemas import IncidentDetail, IncidentOut, TimelineEntry
from siaga112.incidents.service import get_details, with_allowed
from siaga112.locations.schemas import LocationOut
from siaga112.telephony import pbx
from siaga112.telephony.sipp import SippOperator, pbx_unavailable_reason, run_caller

DEMO_CALLER = "+6281234567890"


async def _wait_for_call(
    settings: Settings, *, since: datetime, anonymous: bool, within_s: float
) -> IncidentDetail | None:
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
                    d = await get_details(
                        session=session,
                        incident_id=call.incident_id,
                        actor=system_actor("demo"),
                        request_id=None,
                    )
                    await session.commit()
                    base = IncidentOut.model_validate(d.incident)
                    base.allowed_statuses = with_allowed(d.incident, system_actor("demo"))
                    return IncidentDetail(
                        **base.model_dump(),
                        calls=[CallOut.model_validate(c) for c in d.calls],
                        locations=[LocationOut.model_validate(x) for x in d.locations],
                        timeline=[TimelineEntry.model_validate(e) for e in d.timeline],
                    )
            await asyncio.sleep(0.5)
        return None
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
    detail = asyncio.run(_wait_for_call(settings, since=since, anonymous=anonymous, within_s=15))
    if detail is None:
        print(
            "error: the call went through Asterisk but siaga112 recorded no incident for it;"
            " is `siaga112 serve` running (make run)?",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(detail.model_dump(mode="json"), indent=2, ensure_ascii=False))
    print(
        f"\nincident {detail.id}: through the API, "
        f"curl -H 'Authorization: Bearer $KEY' http://{settings.api.host}:{settings.api.port}"
        f"/v1/incidents/{detail.id}",
        file=sys.stderr,
    )
    return 0
