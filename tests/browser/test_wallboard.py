"""The supervisor's wallboard shows exactly what /v1/stats gives for the same period, for today
and for the last hour, over calls with known answer times."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from tests.browser.conftest import Server, add_user, off_loop, screenshot, sign_in
from tests.conftest import engine_for


def _calls(now: datetime) -> list[Call]:
    """Seven calls in the last hour and in the centre's day (WIB, which starts at 17:00 UTC: just
    after it they are spread over its first minutes): answered after 5, 9, 12, 14, 18 and 25 s,
    one abandoned. (Rows as the call recorder writes them; the stats read nothing else.)"""
    local = now.astimezone(ZoneInfo("Asia/Jakarta"))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    first = max(now - timedelta(minutes=50), midnight + timedelta(seconds=5))
    step = (now - timedelta(seconds=60) - first) / 6
    out = []
    for i, answer_after in enumerate((5, 9, 12, 14, 18, 25, None)):
        offered = first + step * i
        answered = offered + timedelta(seconds=answer_after) if answer_after else None
        uid = f"wb.{uuid.uuid4().hex[:12]}"
        out.append(
            Call(
                uniqueid=uid,
                linkedid=uid,
                caller_id_available=True,
                source="agi",
                state="ended" if answered else "abandoned",
                offered_at=offered,
                answered_at=answered,
                operator="6001" if answered else None,
                ended_at=(answered or offered) + timedelta(seconds=40),
            )
        )
    return out


def _seed(server: Server) -> list[datetime]:
    """Stores the calls; their offered times."""
    calls = _calls(datetime.now(UTC))
    offered = [c.offered_at for c in calls]  # read before the commit expires them

    async def run() -> None:
        async for engine in engine_for(server.database_url):
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async with async_sessionmaker(engine)() as session:
                session.add_all(calls)
                await session.commit()

    off_loop(lambda: asyncio.run(run()))
    return offered


def test_wallboard_figures_equal_v1_stats(page: Page, server: Server) -> None:
    add_user(server, "spv", Role.SUPERVISOR, name="Pak Hendra")
    offered = _seed(server)
    sign_in(page, server, "spv")
    expect(page).to_have_url(f"{server.url}/console/wallboard")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    screenshot(page, "wallboard")
    with server.api() as api:
        for period in ("today", "last_hour"):
            section = page.locator(f"#wb-{period}")
            start = section.get_attribute("data-start")
            end = section.get_attribute("data-end")
            assert start
            assert end
            r = api.get("/v1/stats", params={"start": start, "end": end, "tz": "Asia/Jakarta"})
            assert r.status_code == 200, r.text
            total = r.json()["total"]
            since, until = datetime.fromisoformat(start), datetime.fromisoformat(end)
            assert sum(since <= t < until for t in offered) == 7, period
            assert total["offered"] >= 7
            shown = {
                f: float(section.locator(f"[data-field={f}]").get_attribute("data-value") or "nan")
                for f in (
                    "offered",
                    "answered",
                    "abandoned",
                    "abandon_rate",
                    "within_10s",
                    "within_15s",
                    "within_20s",
                )
            }
            assert shown == {
                "offered": total["offered"],
                "answered": total["answered"],
                "abandoned": total["abandoned"],
                "abandon_rate": total["abandon_rate"],
                "within_10s": total["answered_within"]["10s"],
                "within_15s": total["answered_within"]["15s"],
                "within_20s": total["answered_within"]["20s"],
            }, period
            # And as a person reads it: the percentage shown is the API's share.
            rate = section.locator("[data-field=abandon_rate]").inner_text()
            assert rate == f"{total['abandon_rate'] * 100:.1f}%"
