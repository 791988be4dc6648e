"""Growth benchmark: the AGI statement and the history API as a centre's record grows to 1 M and
10 M incidents (``python -m bench.scale``; bench/README.md describes it).

1. A database of its own (``siaga112_bench_scale``, dropped, created and migrated through the
   project's migrations; never the development database).
2. At each size (0, then ``--sizes``): fills the database up to that many incidents with
   server-side SQL (``generate_series``, ``INSERT ... SELECT`` in chunks, every production
   index in place, the backend reniced), each incident with what the real flow leaves around it:
   its call (caller numbers in the forms carriers send, repeat and nuisance callers, callers
   without caller ID), locations, timeline lines, audit rows, dispatches for a share; spread
   over ``--years`` of ``created_at`` up to now. Then VACUUM (ANALYZE) and a CHECKPOINT.
3. Measures, at normal priority, one after the other:
   - the AGI statement: ``Telephony._record_call`` (what the FastAGI server calls, i.e.
     ``record_incoming`` in autocommit) ``--calls`` times, with facts parsed from AGI variables
     by the server's own parser: new numbers, numbers with years of history, callers calling
     again within the repeat window, callers without caller ID;
   - the REST API through the real app (``create_app``, httpx over ASGI) with a supervisor key
     of the bench's own: the incidents list with filters and a next page, calls and incidents
     by a caller's number in the forms people type, a caller's history, one incident, the
     service levels of a day (``--requests`` each, interleaved).
4. Reports p50/p99 per size, growth against the empty database, the load average, the fill
   time and the database size, and ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements of every
   measurement whose p99 grew more than ``--explain-over`` times.

The database is dropped at the end unless ``--keep``. ``--smoke`` runs tiny sizes (the test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.config import Settings
from siaga112.db.manage import connect, drop_database, upgrade
from siaga112.db.session import make_sessionmaker
from siaga112.metrics import Metrics
from siaga112.metrics import quantile as sorted_quantile
from siaga112.runtime.telephony import Telephony
from siaga112.telephony.facts import facts_from_env

BENCH_DATABASE = "siaga112_bench_scale"
DEFAULT_SIZES = (1_000_000, 10_000_000)
SMOKE_SIZES = (3_000, 6_000)
# Numbers with years of history: a small set of nuisance callers (a tenth of all calls, each
# hundreds of times at 10 M) and a skewed pool of ordinary callers, some of whom call often.
NUISANCE_NUMBERS = 2_000
HISTORY_PREFIX = "+62812"
NEW_PREFIX = "+62857"  # never in the filled history
BUSIEST = f"{HISTORY_PREFIX}{NUISANCE_NUMBERS:08d}"  # the pool's first: the longest history
OPERATORS = 40


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def quantile(values: Sequence[float], q: float) -> float | None:
    return sorted_quantile(sorted(values), q)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f}"


def history_number(k: int) -> str:
    return f"{HISTORY_PREFIX}{k:08d}"


# ---------------------------------------------------------------------------------------------
# the fill: server-side SQL, one transaction per chunk

# One chunk of incidents [lo, hi) whose created_at runs from :t0 (row :first) to :t1 (row
# :last) in id order, as a centre's record does. Random choices are made once per incident
# in a temporary table that every following INSERT reads.
_CHUNK_ROWS = """
CREATE TEMP TABLE g ON COMMIT DROP AS
SELECT i, t, k,
       u_id < 0.08 AS nokey,
       (u_id < 0.04 OR u_id >= 0.08) AND u_pai < 0.7 AS has_pai,
       CASE WHEN u_form < 0.4 THEN 0 WHEN u_form < 0.7 THEN 1 ELSE 2 END AS form,
       u_ch >= 0.03 AS is_call,
       u_ans < 0.82 AS answered,
       2 + 40 * u_wait ^ 3 AS wait_s,
       20 + 400 * u_talk ^ 2 AS talk_s,
       CASE WHEN u_cls < 0.30 THEN NULL
            WHEN u_cls < 0.545 THEN 'emergency' WHEN u_cls < 0.65 THEN 'information'
            WHEN u_cls < 0.825 THEN 'prank' WHEN u_cls < 0.965 THEN 'ghost'
            WHEN u_cls < 0.985 THEN 'test' ELSE 'duplicate' END AS classification,
       (ARRAY['kebakaran','kecelakaan','bencana','kriminal','medis','kdrt','hewan',
              'orang_hilang','pohon_tumbang','other'])[1 + floor(u_cat * 10)::int] AS category,
       1 + floor(u_op * CAST(:operators AS int))::int AS op,
       u_loc < 0.7 AS located,
       u_loc < 0.12 AS aml
FROM (
    SELECT i,
           CAST(:t0 AS timestamptz) + (CAST(:t1 AS timestamptz) - CAST(:t0 AS timestamptz))
               * ((i - CAST(:first AS bigint))::float8
                  / GREATEST(CAST(:last AS bigint) - CAST(:first AS bigint), 1))
               + random() * interval '30 seconds' AS t,
           CASE WHEN random() < 0.12 THEN floor(random() * CAST(:nuisance AS int))::bigint
                ELSE CAST(:nuisance AS int)
                     + floor(CAST(:pool AS int) * random() ^ 2)::bigint END AS k,
           random() AS u_id, random() AS u_pai, random() AS u_form, random() AS u_ch,
           random() AS u_ans, random() AS u_wait, random() AS u_talk, random() AS u_cls,
           random() AS u_cat, random() AS u_op, random() AS u_loc
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS i
) r
"""

_CHUNK_DERIVED = """
CREATE TEMP TABLE h ON COMMIT DROP AS
SELECT g.*,
       '+62812' || lpad(k::text, 8, '0') AS e164,
       CASE WHEN nokey THEN NULL
            WHEN form = 0 THEN '0812' || lpad(k::text, 8, '0')
            WHEN form = 1 THEN '62812' || lpad(k::text, 8, '0')
            ELSE '+62812' || lpad(k::text, 8, '0') END AS caller_number,
       extract(epoch FROM t)::bigint || '.' || i AS uid,
       t + make_interval(secs => wait_s) AS answered_at,
       t + make_interval(secs => wait_s + CASE WHEN answered THEN talk_s ELSE 0 END) AS ended_at,
       CASE WHEN classification = 'emergency' AND category NOT IN ('other') THEN true
            ELSE false END AS dispatched,
       CASE WHEN t > now() - interval '2 hours' THEN
                (ARRAY['new','in_progress','dispatched'])[1 + (i % 3)::int]
            WHEN classification IS NULL THEN 'resolved' ELSE 'closed' END AS status
FROM g
"""

_FILL_STATEMENTS = (
    # incidents: the AGI statement's row, as an operator later left it
    """
INSERT INTO incidents (id, status, category, classification, priority, channel, caller_number,
                       origin_linkedid, created_by, closed_at, created_at, updated_at)
SELECT i, status,
       CASE WHEN classification IN ('emergency', 'information') THEN category END,
       classification,
       CASE WHEN classification = 'emergency' THEN 1 + (i % 2)::int ELSE 3 END,
       CASE WHEN is_call THEN 'call' ELSE (ARRAY['walk_in','radio','text'])[1 + (i % 3)::int] END,
       CASE WHEN NOT is_call THEN NULL WHEN has_pai OR NOT nokey THEN e164 END,
       CASE WHEN is_call THEN uid END,
       CASE WHEN is_call THEN 'system:agi' ELSE 'operator:' || (6000 + op) END,
       CASE WHEN status = 'closed' THEN ended_at + interval '2 minutes' END,
       t, ended_at + interval '2 minutes'
FROM h
""",
    # calls: the caller leg, ended or abandoned, its locations derived
    """
INSERT INTO calls (id, uniqueid, linkedid, channel, caller_number, caller_e164, asserted_number,
                   presentation, caller_id_available, dialled_number, pai_raw, pani_raw, state,
                   source, queue, operator, outcome, hangup_cause, offered_at, enqueued_at,
                   ringing_at, answered_at, ended_at, incident_id, created_at, updated_at,
                   locations_done_at)
SELECT md5('c' || i)::uuid, uid, uid, 'PJSIP/carrier-' || lpad(to_hex(i), 8, '0'),
       caller_number, CASE WHEN NOT nokey THEN e164 END, CASE WHEN has_pai THEN e164 END,
       CASE WHEN nokey THEN (CASE WHEN i % 2 = 0 THEN 'prohib' ELSE 'unavailable' END)
            ELSE 'allowed_not_screened' END,
       NOT nokey, '112',
       CASE WHEN has_pai THEN '<tel:' || e164 || '>' END,
       CASE WHEN located THEN '3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=51010'
                              || lpad(to_hex(i % 65536), 4, '0') || '0A1B2C3' END,
       CASE WHEN answered THEN 'ended' ELSE 'abandoned' END, 'agi', 'siaga112',
       CASE WHEN answered THEN (6000 + op)::text END,
       CASE WHEN answered THEN 'answered' ELSE 'abandoned' END, 'Normal Clearing',
       t, t + interval '300 milliseconds', t + interval '1 second',
       CASE WHEN answered THEN answered_at END, ended_at, i, t, ended_at,
       CASE WHEN located THEN t + interval '2 seconds' END
FROM h WHERE is_call
""",
    """
INSERT INTO locations (id, call_id, incident_id, source, method, lat, lon, radius_m, confidence,
                       observed_at, raw, created_at)
SELECT md5('l' || i)::uuid, md5('c' || i)::uuid, i, 'network_cell', 'cell',
       -8.0 + (i % 1000) * 0.004, 110.0 + (i % 997) * 0.005, 1500, 68, t + interval '2 seconds',
       jsonb_build_object('radio', 'LTE', 'mcc', 510, 'net', 10, 'area', i % 65536),
       t + interval '2 seconds'
FROM h WHERE is_call AND located
UNION ALL
SELECT md5('a' || i)::uuid, md5('c' || i)::uuid, i, 'aml_sms', 'GNSS',
       -8.0 + (i % 1000) * 0.004, 110.0 + (i % 997) * 0.005, 12, 68, t + interval '20 seconds',
       NULL, t + interval '21 seconds'
FROM h WHERE is_call AND aml
""",
    # the timeline: what the AGI statement, the call tracker, the location worker and the
    # operator (one update with the classification) write
    """
INSERT INTO incident_events (incident_id, at, actor, kind, data)
SELECT i, e.at, e.actor, e.kind, e.data
FROM h, LATERAL (VALUES
    (true, t, 'system:agi', 'created',
     jsonb_build_object('status', 'new', 'channel', 'call', 'linkedid', uid)),
    (is_call, t, 'system:agi', 'call_offered',
     jsonb_build_object('uniqueid', uid, 'caller_number', CASE WHEN NOT nokey THEN e164 END)),
    (is_call AND answered, answered_at, 'system:ami', 'call_answered',
     jsonb_build_object('uniqueid', uid, 'operator', (6000 + op)::text)),
    (is_call AND answered, ended_at, 'system:ami', 'call_ended',
     jsonb_build_object('uniqueid', uid, 'operator', (6000 + op)::text)),
    (is_call AND NOT answered, ended_at, 'system:ami', 'call_abandoned',
     jsonb_build_object('uniqueid', uid, 'operator', NULL)),
    (is_call AND located, t + interval '2 seconds', 'system:locations', 'location_added',
     jsonb_build_object('source', 'network_cell')),
    (classification IS NOT NULL, ended_at + interval '1 minute', 'operator:' || (6000 + op),
     'updated', jsonb_build_object('classification', classification, 'status', status)),
    (dispatched, ended_at + interval '30 seconds', 'operator:' || (6000 + op),
     'dispatch_created', jsonb_build_object('agency', category))
) AS e(keep, at, actor, kind, data)
WHERE e.keep
""",
    """
INSERT INTO audit_events (at, actor, action, entity_type, entity_id, after)
SELECT t, 'system:agi', 'incident.create', 'incident', i::text,
       jsonb_build_object('status', 'new', 'channel', 'call', 'linkedid', uid, 'uniqueid', uid,
                          'caller_number', CASE WHEN has_pai OR NOT nokey THEN e164 END,
                          'caller_id_available', NOT nokey, 'dialled_number', '112')
FROM h
UNION ALL
SELECT ended_at + interval '1 minute', 'operator:' || (6000 + op), 'incident.update',
       'incident', i::text, jsonb_build_object('classification', classification,
                                                'status', status)
FROM h WHERE classification IS NOT NULL
UNION ALL
SELECT ended_at + interval '30 seconds', 'operator:' || (6000 + op), 'dispatch.create',
       'incident', i::text, jsonb_build_object('category', category)
FROM h WHERE dispatched
""",
    """
INSERT INTO dispatches (incident_id, agency_id, status, created_by, acknowledged_at,
                        en_route_at, on_scene_at, completed_at, created_at, updated_at)
SELECT i, (SELECT min(agency_id) FROM category_agencies ca WHERE ca.category = h.category),
       CASE WHEN status = 'dispatched' THEN 'sent' ELSE 'completed' END,
       'operator:' || (6000 + op),
       ended_at + interval '1 minute', ended_at + interval '3 minutes',
       ended_at + interval '15 minutes', ended_at + interval '60 minutes',
       ended_at + interval '30 seconds', ended_at + interval '60 minutes'
FROM h WHERE dispatched AND category IN (SELECT category FROM category_agencies)
""",
)


def _sql(text: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` placeholders to asyncpg's ``$n``."""
    names = sorted(params, key=len, reverse=True)
    order: list[str] = []
    for name in names:
        token = f":{name}"
        if token in text:
            order.append(name)
    values: list[Any] = []
    for name in order:
        values.append(params[name])
        text = text.replace(f":{name}", f"${len(values)}")
    return text, values


@dataclass
class Fill:
    rows_before: int
    rows_after: int
    seconds: float
    rows_seconds: float
    index_seconds: float
    database_bytes: int
    table_rows: dict[str, int] = field(default_factory=dict)


async def _renice_backend(conn: asyncpg.Connection, niceness: int) -> str:
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    try:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
        return f"backend {pid} at nice {niceness}"
    except OSError as exc:  # another user's process (PostgreSQL elsewhere)
        return f"backend {pid} not reniced ({exc.strerror})"


FILLED_TABLES = ("incidents", "calls", "locations", "incident_events", "audit_events", "dispatches")

# Secondary indexes that back no constraint: dropped for the fill and built again after it
# (a sort instead of millions of random inserts, each page's first change after a checkpoint
# written whole to the WAL). Primary keys and unique indexes stay in place.
_PLAIN_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname = ANY($1::text[]) AND NOT i.indisprimary AND NOT i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY t.relname, c.relname
"""


async def fill_to(
    url: str, have: int, target: int, *, years: float, chunk: int, niceness: int
) -> Fill:
    """Adds ``target - have`` incidents (``have``: filled before; the measured calls' own
    incidents do not count)."""
    conn = await connect(url)
    try:
        log(f"fill: {await _renice_backend(conn, niceness)}")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET work_mem = '64MB'")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        # Parallel workers would run at the server's priority, not the reniced backend's.
        await conn.execute("SET max_parallel_maintenance_workers = 0")
        # The rows are consistent by construction: no foreign-key checks row by row, no NOTIFY
        # to listeners (triggers off for this session only).
        await conn.execute("SET session_replication_role = replica")
        # The measured calls' incidents keep their ids; the fill continues above them.
        base = await conn.fetchval("SELECT COALESCE(max(id), 0) FROM incidents")
        todo = target - have
        now = datetime.now(UTC).replace(microsecond=0)
        t0, t1 = now - timedelta(days=365.25 * years), now - timedelta(minutes=5)
        started = time.perf_counter()
        indexes = await conn.fetch(_PLAIN_INDEXES, list(FILLED_TABLES))
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["name"]}"')
        try:
            done = 0
            lo = base + 1
            first, last = lo, lo + todo - 1
            while done < todo:
                n = min(chunk, todo - done)
                params = {
                    "lo": lo,
                    "hi": lo + n,
                    "first": first,
                    "last": last,
                    "t0": t0,
                    "t1": t1,
                    "nuisance": NUISANCE_NUMBERS,
                    "pool": max(1_000, target // 2),
                    "operators": OPERATORS,
                }
                async with conn.transaction():
                    text, values = _sql(_CHUNK_ROWS, params)
                    await conn.execute(text, *values)
                    await conn.execute(_CHUNK_DERIVED)
                    for statement in _FILL_STATEMENTS:
                        await conn.execute(statement)
                lo += n
                done += n
                elapsed = time.perf_counter() - started
                log(
                    f"fill: {have + done:,} / {target:,} incidents, {done / elapsed:,.0f}/s, "
                    f"load {load()}"
                )
        finally:
            rows_s = time.perf_counter() - started
            log(f"fill: rows in {rows_s:.0f} s; building {len(indexes)} indexes again")
            for index in indexes:
                await conn.execute(index["definition"])
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('incidents', 'id'), "
            "(SELECT max(id) FROM incidents))"
        )
        fill_s = time.perf_counter() - started
        log(f"fill: indexes built in {fill_s - rows_s:.0f} s; VACUUM (ANALYZE)")
        await settle(conn)
        # The fill's dirty pages written now, not during the measurement.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
        total_s = time.perf_counter() - started
        tables = {}
        for table in FILLED_TABLES:
            tables[table] = await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = $1", table
            )
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        log(f"fill: {todo:,} incidents in {fill_s:.0f} s (+VACUUM, CHECKPOINT: {total_s:.0f} s)")
        return Fill(
            rows_before=have,
            rows_after=target,
            seconds=round(total_s, 1),
            rows_seconds=round(rows_s, 1),
            index_seconds=round(fill_s - rows_s, 1),
            database_bytes=size,
            table_rows=tables,
        )
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# the AGI statement, as the FastAGI server runs it


@dataclass
class CallMix:
    """Which callers the measured calls come from."""

    rng: random.Random
    filled: int
    serial: int = 0
    recent: list[str] = field(default_factory=list)

    def number(self) -> tuple[str, str | None]:
        """(kind, number in E.164 or None for no caller ID)."""
        u = self.rng.random()
        if u < 0.10:
            return "no_caller_id", None
        if u < 0.40:
            self.serial += 1
            number = f"{NEW_PREFIX}{self.serial:08d}"
            self.recent.append(number)
            return "new", number
        if u < 0.55 and self.recent:
            # Called a minute ago: a repeat caller within the window.
            return "again", self.rng.choice(self.recent[-200:])
        if u < 0.70:
            return "nuisance", history_number(self.rng.randrange(NUISANCE_NUMBERS))
        pool = max(1_000, self.filled // 2)
        return "history", history_number(NUISANCE_NUMBERS + int(pool * self.rng.random() ** 2))


def agi_env(serial: int, kind: str, number: str | None, rng: random.Random) -> dict[str, str]:
    """The AGI variables Asterisk sends for a 112 call (extensions-emergency.conf.part)."""
    import base64

    uid = f"{time.time():.0f}.{900_000_000 + serial}"
    env = {
        "agi_request": "agi://127.0.0.1:4573/incoming",
        "agi_channel": f"PJSIP/carrier-{serial:08x}",
        "agi_uniqueid": uid,
        "agi_linkedid": uid,
        "agi_extension": "112",
        "agi_arg_1": "112",
        "agi_arg_3": base64.b64encode(
            b"3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
        ).decode(),
        "agi_arg_7": "",
    }
    if number is None:
        env.update(agi_callerid="anonymous", agi_calleridname="", agi_arg_5="prohib")
        if rng.random() < 0.5:
            pai = f"<tel:{history_number(rng.randrange(10_000_000))}>"
            env["agi_arg_2"] = base64.b64encode(pai.encode()).decode()
        return env
    form = rng.random()
    digits = number[1:]
    shown = "0" + digits[2:] if form < 0.4 else digits if form < 0.7 else number
    env.update(agi_callerid=shown, agi_calleridname="", agi_arg_5="allowed_not_screened")
    if kind != "no_pai" and rng.random() < 0.7:
        env["agi_arg_2"] = base64.b64encode(f"<tel:{number}>".encode()).decode()
    return env


async def measure_agi(
    targets: Sequence[Target], calls: int, filled: int, seed: int
) -> dict[str, dict[str, Any]]:
    """The same calls (numbers, forms, caller ID) to every target, alternating which goes first,
    so that each sees the same machine."""
    rng = random.Random(seed)
    mix = CallMix(rng=random.Random(seed + 1), filled=filled)
    times: dict[str, list[float]] = {t.label: [] for t in targets}
    by_kind: dict[str, dict[str, list[float]]] = {t.label: {} for t in targets}
    repeats = dict.fromkeys(times, 0)
    serial = seed * 1_000_000
    warm = max(20, calls // 20)
    for n in range(warm + calls):
        serial += 1
        kind, number = mix.number()
        facts = facts_from_env(agi_env(serial, kind, number, rng))
        for target in targets if n % 2 else list(reversed(targets)):
            started = time.perf_counter()
            recorded = await target.telephony._record_call(facts, datetime.now(UTC))
            took = time.perf_counter() - started
            if n < warm:
                continue
            times[target.label].append(took)
            by_kind[target.label].setdefault(kind, []).append(took)
            repeats[target.label] += recorded.repeat_caller
    return {
        label: {
            "calls": len(values),
            "p50_s": quantile(values, 0.5),
            "p99_s": quantile(values, 0.99),
            "max_s": max(values),
            "repeat_callers": repeats[label],
            "by_kind": {
                k: {"n": len(v), "p50_s": quantile(v, 0.5), "p99_s": quantile(v, 0.99)}
                for k, v in sorted(by_kind[label].items())
            },
        }
        for label, values in times.items()
    }


# ---------------------------------------------------------------------------------------------
# the API, through the real app


@dataclass
class Captured:
    on: bool = False
    statements: list[tuple[str, Any]] = field(default_factory=list)


def capture_statements(engine: AsyncEngine) -> Captured:
    captured = Captured()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if captured.on:
            captured.statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return captured


@dataclass(frozen=True)
class Probe:
    name: str
    paths: Callable[[random.Random], str]


def _typed(number: str, rng: random.Random) -> str:
    """A number as someone types it: 0812..., 62812... or +62812..."""
    digits = number[1:]
    return rng.choice(["0" + digits[2:], digits, number])


def probes(
    filled: int, now: datetime, cursor: str | None, incident_ids: Sequence[int]
) -> list[Probe]:
    pool = max(1_000, filled // 2)

    def some_number(rng: random.Random) -> str:
        if rng.random() < 0.3:
            return history_number(rng.randrange(NUISANCE_NUMBERS))
        return history_number(NUISANCE_NUMBERS + int(pool * rng.random() ** 2))

    def day(rng: random.Random) -> str:
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=rng.randrange(0, 60)
        )
        start = end - timedelta(days=1)
        return f"start={start.isoformat()}&end={end.isoformat()}".replace("+00:00", "Z")

    week_ago = (now - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    month_ago = (now - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    yesterday = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    return [
        Probe("incidents: newest 50", lambda r: "/v1/incidents?limit=50"),
        Probe(
            "incidents: open (new, in_progress)",
            lambda r: "/v1/incidents?status=new&status=in_progress&limit=50",
        ),
        Probe(
            "incidents: prank, last 7 days",
            lambda r: f"/v1/incidents?classification=prank&created_from={week_ago}&limit=50",
        ),
        Probe(
            "incidents: category, last 30 days",
            lambda r: (
                "/v1/incidents?category="
                + r.choice(["kebakaran", "hewan", "kdrt", "orang_hilang"])
                + f"&created_from={month_ago}&limit=50"
            ),
        ),
        Probe(
            "incidents: next page",
            lambda r: (
                f"/v1/incidents?limit=50&cursor={cursor}" if cursor else "/v1/incidents?limit=50"
            ),
        ),
        Probe(
            "incidents: by caller number",
            lambda r: f"/v1/incidents?caller_number={_typed(some_number(r), r)}&limit=50".replace(
                "+", "%2B"
            ),
        ),
        Probe(
            "calls: by caller number",
            lambda r: f"/v1/calls?caller_number={_typed(some_number(r), r)}&limit=50".replace(
                "+", "%2B"
            ),
        ),
        Probe(
            "calls: abandoned, last 24 h",
            lambda r: f"/v1/calls?state=abandoned&offered_from={yesterday}&limit=50",
        ),
        Probe(
            "caller history",
            lambda r: f"/v1/callers/{_typed(some_number(r), r)}/history".replace("+", "%2B"),
        ),
        Probe(
            "one incident",
            lambda r: (
                f"/v1/incidents/{r.choice(incident_ids)}" if incident_ids else "/v1/incidents/1"
            ),
        ),
        Probe("stats: one day", lambda r: f"/v1/stats?{day(r)}".replace("+", "%2B")),
    ]


async def bench_key(engine: AsyncEngine) -> str:
    async with make_sessionmaker(engine)() as session:
        key = await create_key(
            session=session, name="bench-scale", role=Role.SUPERVISOR, actor=system_actor("bench")
        )
        await session.commit()
    return key.raw


async def measure_api(
    targets: Sequence[Target], requests: int, filled: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Every probe, ``requests`` times, on every target in turn (the same numbers and days)."""
    now = datetime.now(UTC)
    plans: dict[str, list[Probe]] = {}
    for target in targets:
        first = await target.client.get("/v1/incidents?limit=50")
        first.raise_for_status()
        async with target.engine.connect() as conn:
            ids = [
                r[0]
                for r in (
                    await conn.exec_driver_sql(
                        "SELECT id FROM incidents TABLESAMPLE SYSTEM (1) LIMIT 500"
                    )
                ).all()
            ] or [
                r[0]
                for r in (await conn.exec_driver_sql("SELECT id FROM incidents LIMIT 500")).all()
            ]
        plans[target.label] = probes(filled, now, first.json().get("next_cursor"), ids)
    names = [p.name for p in plans[targets[0].label]]
    times: dict[str, dict[str, list[float]]] = {t.label: {n: [] for n in names} for t in targets}
    statements: dict[str, dict[str, list[tuple[str, Any]]]] = {t.label: {} for t in targets}
    for n in range(requests + 3):
        for index, name in enumerate(names):
            order = targets if (n + index) % 2 else list(reversed(targets))
            for target in order:
                path = plans[target.label][index].paths(
                    random.Random(seed * 7919 + n * 131 + index)
                )
                target.captured.statements = []
                target.captured.on = True
                started = time.perf_counter()
                response = await target.client.get(path)
                took = time.perf_counter() - started
                target.captured.on = False
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
                if n < 3:  # the first rounds warm the pool and plan caches
                    continue
                # The slowest request's queries are the ones to EXPLAIN.
                if took > max(times[target.label][name], default=0.0):
                    statements[target.label][name] = list(target.captured.statements)
                times[target.label][name].append(took)
    return {
        label: {
            "requests_each": requests,
            "endpoints": {
                name: {"p50_s": quantile(v, 0.5), "p99_s": quantile(v, 0.99), "max_s": max(v)}
                for name, v in by_name.items()
            },
            "_statements": statements[label],
        }
        for label, by_name in times.items()
    }


async def explain(engine: AsyncEngine, statements: Sequence[tuple[str, Any]]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement, in a transaction rolled back."""
    plans: list[str] = []
    async with engine.connect() as conn:
        for statement, parameters in statements:
            head = statement.lstrip().split(None, 1)[0].upper()
            # The key lookup of every request and the audit row of a read are not the query.
            if head not in ("SELECT", "WITH") or "FROM api_keys" in statement:
                continue
            trans = await conn.begin()
            try:
                rows = (
                    await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                ).all()
                plans.append(statement.strip() + "\n" + "\n".join(r[0] for r in rows))
            finally:
                await trans.rollback()
    return plans


async def agi_statement(
    engine: AsyncEngine, settings: Settings, number: str
) -> list[tuple[str, Any]]:
    """The AGI statement for a call from ``number`` as the driver receives it."""
    captured = capture_statements(engine)
    captured.on = True
    telephony = Telephony(
        settings=settings, sessionmaker=make_sessionmaker(engine), metrics=Metrics(), role="agi"
    )
    # Recorded once for real (one more call) to capture the statement as the driver gets it.
    rng = random.Random(5)
    facts = facts_from_env(agi_env(999_999, "history", number, rng))
    await telephony._record_call(facts, datetime.now(UTC))
    captured.on = False
    return [s for s in captured.statements if "INSERT INTO incidents" in s[0]]


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Options:
    url: str
    sizes: list[int]
    calls: int
    requests: int
    years: float
    chunk: int
    niceness: int
    explain_over: float
    max_gb: float
    reuse: bool = False


@dataclass
class Target:
    """One database as the service sees it: its AGI path and its API."""

    label: str
    engine: AsyncEngine
    telephony: Telephony
    captured: Captured
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def open_target(label: str, url: str) -> AsyncIterator[Target]:
    settings = Settings(database_url=url)
    engine = create_async_engine(url, pool_size=5, hide_parameters=True)
    try:
        captured = capture_statements(engine)
        sessions = make_sessionmaker(engine)
        telephony = Telephony(
            settings=settings, sessionmaker=sessions, metrics=Metrics(), role="agi"
        )
        key = await bench_key(engine)
        app = create_app(settings, engine=engine, sessionmaker=sessions)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://siaga112.bench",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield Target(label, engine, telephony, captured, client)
    finally:
        await engine.dispose()


FILLED = "filled"
TWIN = "empty twin"


async def measure(
    url: str, twin_url: str | None, options: Options, filled: int, seed: int
) -> dict[str, Any]:
    """Measures the database at ``filled`` incidents; with ``twin_url``, an empty database of the
    same schema beside it, request by request, so that growth is read on the same machine."""
    async with contextlib.AsyncExitStack() as stack:
        targets = [await stack.enter_async_context(open_target(FILLED, url))]
        if twin_url is not None:
            targets.append(await stack.enter_async_context(open_target(TWIN, twin_url)))
        before = load()
        log(f"measure at {filled:,}: AGI statement x {options.calls}, load {before}")
        agi = await measure_agi(targets, options.calls, filled, seed)
        log(
            f"measure at {filled:,}: AGI p50 {ms(agi[FILLED]['p50_s'])} ms, "
            f"p99 {ms(agi[FILLED]['p99_s'])} ms; API x {options.requests} each"
        )
        api = await measure_api(targets, options.requests, filled, seed)
        return {
            "incidents": filled,
            "load_before": before,
            "load_after": load(),
            "agi": agi[FILLED],
            "api": api[FILLED],
            "twin": {"agi": agi[TWIN], "api": api[TWIN]} if twin_url is not None else None,
        }


def baseline(result: dict[str, Any], size: dict[str, Any]) -> dict[str, Any] | None:
    """What a size is compared with: its empty twin, measured beside it, else the size-0 run."""
    if size.get("twin"):
        twin: dict[str, Any] = size["twin"]
        return twin
    first: dict[str, Any] = result["sizes"][0]
    return first if first["incidents"] == 0 and first is not size else None


async def explain_grown(url: str, result: dict[str, Any], factor: float) -> dict[str, list[str]]:
    """Plans, at the largest size, of every measurement whose p99 grew more than ``factor``."""
    largest = result["sizes"][-1]
    base = baseline(result, largest)
    out: dict[str, list[str]] = {}
    if base is None:
        return out
    settings = Settings(database_url=url)
    engine = create_async_engine(url, pool_size=2, hide_parameters=True)
    try:
        if largest["agi"]["p99_s"] > factor * base["agi"]["p99_s"]:
            for label, number in (
                ("a nuisance caller", history_number(7)),
                ("a caller's first call", f"{NEW_PREFIX}99999999"),
            ):
                out[f"AGI statement ({label})"] = await explain(
                    engine, await agi_statement(engine, settings, number)
                )
        for name, figures in largest["api"]["endpoints"].items():
            if figures["p99_s"] > factor * base["api"]["endpoints"][name]["p99_s"]:
                out[name] = await explain(engine, largest["api"]["_statements"].get(name, []))
    finally:
        await engine.dispose()
    return out | await explain_busiest(url)


async def explain_busiest(url: str) -> dict[str, list[str]]:
    """Plans of the reads by number for the number with the longest history (the pool's first:
    the fill draws the pool skewed towards it), whatever their p99: what a history costs is
    best seen where it is longest."""
    number = BUSIEST
    out: dict[str, list[str]] = {}
    async with open_target("busiest", url) as target:
        async with target.engine.connect() as conn:
            history = (
                await conn.execute(
                    text("SELECT count(*), max(id) FROM incidents WHERE caller_number = :n"),
                    {"n": number},
                )
            ).one()
        paths = [
            ("incidents by caller number", f"/v1/incidents?caller_number={number}&limit=50"),
            ("calls by caller number", f"/v1/calls?caller_number={number}&limit=50"),
            ("caller history", f"/v1/callers/{number}/history"),
        ]
        if history[1] is not None:
            paths.append(("one incident", f"/v1/incidents/{history[1]}"))
        for name, path in paths:
            target.captured.statements = []
            target.captured.on = True
            response = await target.client.get(path.replace("+", "%2B"))
            target.captured.on = False
            response.raise_for_status()
            label = f"{name}, the busiest number ({number}, {history[0]:,} incidents)"
            out[label] = await explain(target.engine, target.captured.statements)
    return out


def database_url(option: str | None) -> str:
    if option:
        return option
    base = Settings()
    name = make_url(base.database_url_str).database
    url = make_url(base.database_url_str).set(database=BENCH_DATABASE)
    if name == BENCH_DATABASE:
        raise SystemExit("the configured database is the bench's own: give --database-url")
    return url.render_as_string(hide_password=False)


def twin_of(url: str) -> str:
    u = make_url(url)
    return u.set(database=f"{u.database}_empty").render_as_string(hide_password=False)


async def settle(conn: asyncpg.Connection) -> None:
    """VACUUM (ANALYZE): years of history have long been vacuumed in a centre's database
    (autovacuum), their pages all-visible, so index-only scans can skip the tables; a fill
    measured straight after its inserts would have every page to visit. Quick when done."""
    await conn.execute("VACUUM (ANALYZE)")


async def fresh(url: str) -> None:
    await drop_database(url)
    await asyncio.to_thread(upgrade, url)


async def run(options: Options) -> dict[str, Any]:
    url = options.url
    if make_url(url).database in ("siaga112", None, ""):
        raise SystemExit("never the development database: give the bench a database of its own")
    twin = twin_of(url)
    result: dict[str, Any] = {
        "command": " ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "bench.scale", *sys.argv[1:]]
        ),
        "database": make_url(url).database,
        "twin": make_url(twin).database,
        "machine": {"nproc": os.cpu_count(), "load_at_start": load()},
        "sizes": [],
        "fills": [],
    }
    log(f"database {make_url(twin).database} (the empty twin): drop, create, migrate")
    await fresh(twin)
    if options.reuse:
        log(f"database {make_url(url).database}: as it is, migrated to the head; VACUUM (ANALYZE)")
        await asyncio.to_thread(upgrade, url)
        conn = await connect(url)
        try:
            await _renice_backend(conn, options.niceness)
            await settle(conn)
        finally:
            await conn.close()
    else:
        log(f"database {make_url(url).database}: drop, create, migrate")
        await fresh(url)
    conn = await connect(url)
    try:
        result["machine"]["postgresql"] = await conn.fetchval("SHOW server_version")
        result["machine"]["shared_buffers"] = await conn.fetchval("SHOW shared_buffers")
        # Reused: every incident in it (with earlier runs' measured calls) counts.
        have = await conn.fetchval("SELECT count(*) FROM incidents")
    finally:
        await conn.close()
    if options.reuse:
        result["sizes"].append(await measure(url, twin, options, have, seed=9))
    else:
        result["sizes"].append(await measure(url, None, options, 0, seed=1))
        have = 0
        for n, size in enumerate(options.sizes, start=2):
            fill = await fill_to(
                url, have, size, years=options.years, chunk=options.chunk, niceness=options.niceness
            )
            have = size
            result["fills"].append(fill.__dict__)
            gb = fill.database_bytes / 2**30
            log(f"database {gb:.1f} GB at {size:,} incidents")
            later = [s for s in options.sizes if s > size]
            if later and gb * later[-1] / size > options.max_gb:
                raise SystemExit(
                    f"{later[-1]:,} incidents would take about {gb * later[-1] / size:.0f} GB "
                    f"(over --max-gb {options.max_gb:g})"
                )
            result["sizes"].append(await measure(url, twin, options, size, seed=n))
    result["explain"] = await explain_grown(url, result, options.explain_over)
    return result


# ---------------------------------------------------------------------------------------------
# the report


def _cell(figures: dict[str, Any]) -> str:
    return f"{ms(figures['p50_s'])} / {ms(figures['p99_s'])}"


def _rows(size: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]]:
    rows: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
        ("AGI statement (`_record_call`)", lambda s: s["agi"])
    ]

    def kind_of(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda s: s["agi"]["by_kind"][kind]

    def endpoint(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda s: s["api"]["endpoints"][name]

    rows += [(f"AGI, caller: {k}", kind_of(k)) for k in size["agi"]["by_kind"]]
    rows += [(f"GET {n}", endpoint(n)) for n in size["api"]["endpoints"]]
    return rows


def report(result: dict[str, Any]) -> str:
    lines = [
        "bench/scale: the AGI statement and the history API as the record grows",
        f"command: {result['command']}",
        f"database: {result['database']} (empty twin {result['twin']}); "
        f"machine: {json.dumps(result['machine'])}",
    ]
    for fill in result["fills"]:
        lines.append(
            f"fill {fill['rows_before']:,} -> {fill['rows_after']:,} incidents: "
            f"{fill['seconds']:.0f} s (rows {fill['rows_seconds']:.0f} s, indexes "
            f"{fill['index_seconds']:.0f} s, then VACUUM and CHECKPOINT), database "
            f"{fill['database_bytes'] / 2**30:.2f} GB, rows {json.dumps(fill['table_rows'])}"
        )
    sizes = result["sizes"]
    first = sizes[0]
    if first["incidents"] == 0 and len(sizes) > 1:
        header = "| p50 / p99 ms | " + " | ".join(f"{s['incidents']:,}" for s in sizes)
        lines += ["", "By size (growth: p99 at the largest size / p99 empty)", ""]
        lines += [header + " | growth |", "| --- " * (len(sizes) + 2) + "|"]
        for name, get in _rows(first):
            try:
                [get(s) for s in sizes]
            except KeyError:
                continue
            growth = get(sizes[-1])["p99_s"] / get(first)["p99_s"]
            cells = " | ".join(_cell(get(s)) for s in sizes)
            lines.append(f"| {name} | {cells} | {growth:.2f}x |")
        loads = " | ".join(s["load_before"] for s in sizes)
        lines.append(f"| load average before (1/5/15 min) | {loads} | |")
    for size in sizes:
        twin = size.get("twin")
        if not twin:
            continue
        lines += [
            "",
            f"At {size['incidents']:,} incidents, beside the empty twin (same requests, "
            f"interleaved; load before {size['load_before']}, after {size['load_after']})",
            "",
            "| p50 / p99 ms | filled | empty twin | p99 filled / twin |",
            "| --- | --- | --- | --- |",
        ]
        for name, get in _rows(size):
            try:
                mine, theirs = get(size), get(twin)
            except KeyError:
                continue
            ratio = mine["p99_s"] / theirs["p99_s"]
            lines.append(f"| {name} | {_cell(mine)} | {_cell(theirs)} | {ratio:.2f}x |")
    lines.append(
        f"\nAGI calls per size: {first['agi']['calls']}; API requests per endpoint: "
        f"{first['api']['requests_each']}; repeat callers found (AGI): "
        + ", ".join(str(s["agi"]["repeat_callers"]) for s in sizes)
    )
    largest = sizes[-1]
    base = baseline(result, largest)
    if base is not None:
        goal = largest["agi"]["p99_s"] / base["agi"]["p99_s"]
        against = "its empty twin" if largest.get("twin") else "the empty database"
        lines.append(
            f"goal, AGI statement p99 at {largest['incidents']:,} incidents < 2x {against}: "
            f"{goal:.2f}x, " + ("met" if goal < 2 else "NOT met")
        )
    for name, plans in result.get("explain", {}).items():
        lines += ["", f"EXPLAIN (ANALYZE, BUFFERS): {name}"]
        lines += plans
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
        default=list(DEFAULT_SIZES),
        help="incident counts to fill to and measure at, rising (default %(default)s)",
    )
    p.add_argument("--calls", type=int, default=2_000, help="AGI statements measured per size")
    p.add_argument("--requests", type=int, default=200, help="requests per API endpoint per size")
    p.add_argument("--years", type=float, default=5.0, help="history spread over this many years")
    p.add_argument("--chunk", type=int, default=200_000, help="incidents per fill transaction")
    p.add_argument("--nice", type=int, default=10, help="niceness of the filling backend")
    p.add_argument("--explain-over", type=float, default=2.0, help="EXPLAIN what grew more")
    p.add_argument("--max-gb", type=float, default=30.0, help="stop before outgrowing this")
    p.add_argument("--database-url", default=None, help=f"default: .../{BENCH_DATABASE}")
    p.add_argument("--keep", action="store_true", help="leave the database for a look")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="measure the database as a --keep run left it (migrated to the head first)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, few samples: the bench runs")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.calls, args.requests, args.chunk = list(SMOKE_SIZES), 60, 3, 2_000
    if not args.sizes or any(s <= 0 for s in args.sizes) or args.sizes != sorted(set(args.sizes)):
        p.error("--sizes needs rising positive numbers")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = database_url(args.database_url)
    options = Options(
        url=url,
        sizes=args.sizes,
        calls=args.calls,
        requests=args.requests,
        years=args.years,
        chunk=args.chunk,
        niceness=args.nice,
        explain_over=args.explain_over,
        max_gb=args.max_gb,
        reuse=args.reuse,
    )
    try:
        result = asyncio.run(run(options))
    finally:
        if not args.keep:
            for name in (url, twin_of(url)):
                log(f"database {make_url(name).database}: drop")
                asyncio.run(drop_database(name))
    print(report(result))
    if args.json:
        for size in result["sizes"]:
            size["api"].pop("_statements", None)
            if size.get("twin"):
                size["twin"]["api"].pop("_statements", None)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
