"""bench/scale runs end to end in its smoke mode (tiny sizes): it fills, measures the AGI
statement and every API probe at each size beside its empty twin, reports them, and drops its
databases. No speed is asserted: the figures come from the bench itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from siaga112.db.manage import connect
from tests.conftest import ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]


async def _databases(prefix: str) -> list[str]:
    conn = await connect(ADMIN_URL)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%"
        )
    finally:
        await conn.close()
    return [r["datname"] for r in rows]


def test_smoke_run_fills_measures_reports_and_drops_its_databases(tmp_path: Path) -> None:
    name = f"siaga112_test_scale_{uuid.uuid4().hex[:8]}"
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    out = tmp_path / "scale.json"
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.scale",
                "--smoke",
                "--database-url",
                url,
                "--json",
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(out.read_text())
        sizes = result["sizes"]
        assert [s["incidents"] for s in sizes] == [0, 3_000, 6_000]
        assert [f["rows_after"] for f in result["fills"]] == [3_000, 6_000]
        rows = result["fills"][-1]["table_rows"]
        # Every incident has its surroundings: calls, timeline, audit, some locations and
        # dispatches (counts are the planner's estimates after ANALYZE).
        assert rows["calls"] > 5_000
        assert rows["incident_events"] > 4 * 6_000
        assert rows["audit_events"] > 6_000
        assert rows["locations"] > 0
        assert rows["dispatches"] > 0
        for size in sizes:
            assert size["agi"]["calls"] == 60
            assert size["agi"]["p99_s"] >= size["agi"]["p50_s"] > 0
            assert len(size["api"]["endpoints"]) == 11
        for size in sizes[1:]:
            assert size["twin"]["agi"]["calls"] == 60
            # History exists for the numbers the measured calls come from.
            assert size["agi"]["repeat_callers"] > 0
        assert "AGI statement (`_record_call`)" in done.stdout
        assert "beside the empty twin" in done.stdout
        assert "goal, AGI statement p99 at 6,000 incidents" in done.stdout
    finally:
        leftover = asyncio.run(_databases(name))
    assert leftover == [], leftover
