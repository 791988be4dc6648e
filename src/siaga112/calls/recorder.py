"""Writing calls and their incidents from the telephony side.

`record_incoming` runs on the AGI hot path: one statement, one round trip, that opens the
call's incident (once per Asterisk Linkedid), its timeline line and audit event, and the call
row (once per Uniqueid). Replays of the same AGI request change nothing and return the same ids.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from siaga112.incidents.models import Incident

SYSTEM_AGI = "system:agi"

# Where the statements below run: a session, or (the AGI path and the call tracker's batches,
# one self-contained statement each) a pooled connection in autocommit, without the ORM.
Executor = AsyncSession | AsyncConnection

# The incident is inserted only if none exists for the Linkedid; its "created" and
# "call_offered" timeline lines (the live stream's events, events/hub.py) and audit event only
# when it was inserted: two rows of one INSERT, which costs the statement one more heap tuple and
# its index entries (measured by bench/events). The call is inserted, or (a replay, or the
# tracker saw the call first) completed with what only the AGI request knows.
_RECORD_SQL = text(
    """
WITH inc AS (
    INSERT INTO incidents (status, priority, channel, caller_number, caller_name,
                           origin_linkedid, created_by, created_at, updated_at)
    VALUES ('new', 3, 'call', :incident_number, :caller_name, :linkedid, :actor, :at, :at)
    ON CONFLICT (origin_linkedid) DO NOTHING
    RETURNING id
), ev AS (
    INSERT INTO incident_events (incident_id, at, actor, kind, data)
    SELECT inc.id, :at, :actor, e.kind, e.data
    FROM inc, (VALUES (1, 'created', CAST(:event_data AS jsonb)),
                      (2, 'call_offered', CAST(:offered_data AS jsonb))) AS e(n, kind, data)
    ORDER BY e.n
), au AS (
    INSERT INTO audit_events (at, actor, action, entity_type, entity_id, after)
    SELECT :at, :actor, 'incident.create', 'incident', id::text, CAST(:event_data AS jsonb)
    FROM inc
), iid AS (
    SELECT id FROM inc
    UNION ALL
    SELECT id FROM incidents WHERE origin_linkedid = :linkedid
    LIMIT 1
)
INSERT INTO calls (id, uniqueid, linkedid, channel, caller_number, caller_name, caller_e164,
                   asserted_number, presentation, caller_id_available, dialled_number, pai_raw,
                   pani_raw, geolocation_raw, geoloc_effective, geoloc_method, state, source,
                   node, offered_at, incident_id, created_at, updated_at)
VALUES (:id, :uniqueid, :linkedid, :channel, :caller_number, :caller_name, :caller_e164,
        :asserted_number, :presentation, :caller_id_available, :dialled_number, :pai, :pani,
        :geolocation, :geoloc_effective, :geoloc_method, 'offered', :source, :node, :at,
        (SELECT id FROM iid), clock_timestamp(), clock_timestamp())
ON CONFLICT (uniqueid) DO UPDATE SET
    node = COALESCE(calls.node, EXCLUDED.node),
    caller_e164 = COALESCE(calls.caller_e164, EXCLUDED.caller_e164),
    asserted_number = COALESCE(calls.asserted_number, EXCLUDED.asserted_number),
    presentation = COALESCE(calls.presentation, EXCLUDED.presentation),
    dialled_number = COALESCE(calls.dialled_number, EXCLUDED.dialled_number),
    pai_raw = COALESCE(calls.pai_raw, EXCLUDED.pai_raw),
    pani_raw = COALESCE(calls.pani_raw, EXCLUDED.pani_raw),
    geolocation_raw = COALESCE(calls.geolocation_raw, EXCLUDED.geolocation_raw),
    geoloc_effective = COALESCE(calls.geoloc_effective, EXCLUDED.geoloc_effective),
    geoloc_method = COALESCE(calls.geoloc_method, EXCLUDED.geoloc_method),
    incident_id = COALESCE(calls.incident_id, EXCLUDED.incident_id),
    offered_at = LEAST(calls.offered_at, EXCLUDED.offered_at),
    updated_at = EXCLUDED.updated_at
RETURNING id, incident_id, (xmax = 0) AS inserted,
    -- Routing facts for the dialplan, in the same round trip: is the number flagged as a
    -- prank/nuisance now, and did it call within the repeat window?
    EXISTS (SELECT 1 FROM number_flags f
            WHERE f.number = :incident_number AND f.revoked_at IS NULL
              AND f.expires_at > :at) AS flagged,
    EXISTS (SELECT 1 FROM incidents r
            WHERE r.caller_number = :incident_number AND r.channel = 'call'
              AND r.created_at >= :at - make_interval(mins => :repeat_window_min)
              AND r.created_at < :at
              AND r.origin_linkedid IS DISTINCT FROM :linkedid) AS repeat_caller
"""
)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the telephony edge learned about a caller leg, in domain terms."""

    uniqueid: str
    linkedid: str
    channel: str | None
    caller_number: str | None
    caller_name: str | None
    caller_e164: str | None
    asserted_number: str | None
    presentation: str | None
    caller_id_available: bool
    # The number an operator should see and call back (emergency override of privacy).
    callback_number: str | None
    dialled_number: str | None
    pai: str | None
    pani: str | None
    geolocation: str | None
    # What Asterisk resolved from a PIDF-LO body (GEOLOC_PROFILE): kept on the call row (same
    # statement, no extra round trip) and turned into a location off the hot path, or by the
    # location sweep when that step was deferred.
    geoloc_effective: str | None = None
    geoloc_method: str | None = None
    # The PBX node that took the call (its systemname); None when not known.
    node: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedCall:
    call_id: uuid.UUID
    incident_id: int
    call_created: bool
    # Only for callers with caller ID: anonymous callers are never flagged nor "repeat".
    flagged: bool = False
    repeat_caller: bool = False


def _clip(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    return value[:limit]


async def record_incoming(
    *,
    session: Executor,
    facts: CallFacts,
    at: datetime,
    actor: str = SYSTEM_AGI,
    source: str = "agi",
    repeat_window_min: int = 10,
) -> RecordedCall:
    """Opens (or finds) the call's incident and records the call. Caller commits."""
    event_data: dict[str, Any] = {
        "status": "new",
        "channel": "call",
        "linkedid": facts.linkedid,
        "uniqueid": facts.uniqueid,
        "caller_number": facts.callback_number,
        "caller_id_available": facts.caller_id_available,
        "dialled_number": facts.dialled_number,
    }
    call_id = uuid.uuid4()
    offered_data: dict[str, Any] = {
        "call_id": str(call_id),
        "uniqueid": facts.uniqueid,
        "linkedid": facts.linkedid,
        "caller_number": facts.callback_number,
        "caller_id_available": facts.caller_id_available,
        "dialled_number": facts.dialled_number,
        "source": source,
        "node": facts.node,
    }
    params = {
        "id": call_id,
        "uniqueid": facts.uniqueid[:64],
        "linkedid": facts.linkedid[:64],
        "channel": _clip(facts.channel, 200),
        "caller_number": _clip(facts.caller_number, 64),
        "caller_name": _clip(facts.caller_name, 200),
        "caller_e164": _clip(facts.caller_e164, 32),
        "asserted_number": _clip(facts.asserted_number, 64),
        "presentation": _clip(facts.presentation, 40),
        "caller_id_available": facts.caller_id_available,
        "incident_number": _clip(facts.callback_number, 64),
        "dialled_number": _clip(facts.dialled_number, 32),
        "pai": _clip(facts.pai, 1000),
        "pani": _clip(facts.pani, 1000),
        "geolocation": _clip(facts.geolocation, 2000),
        "geoloc_effective": _clip(facts.geoloc_effective, 2000),
        "geoloc_method": _clip(facts.geoloc_method, 40),
        "at": at,
        "actor": actor,
        "source": source,
        "node": _clip(facts.node, 31),
        "repeat_window_min": repeat_window_min,
        "event_data": json.dumps(event_data),
        "offered_data": json.dumps(offered_data),
    }
    row = (await session.execute(_RECORD_SQL, params)).one()
    incident_id = row.incident_id
    if incident_id is None:
        # A concurrent replay inserted the incident after this statement's snapshot was taken.
        incident_id = await session.scalar(
            select(Incident.id).where(Incident.origin_linkedid == facts.linkedid)
        )
        if incident_id is None:  # pragma: no cover - the incident insert cannot fail silently
            raise RuntimeError(f"no incident for linkedid {facts.linkedid}")
        await session.execute(
            text("UPDATE calls SET incident_id = :iid WHERE id = :id AND incident_id IS NULL"),
            {"iid": incident_id, "id": row.id},
        )
    known_caller = facts.caller_id_available or facts.asserted_number is not None
    return RecordedCall(
        call_id=row.id,
        incident_id=incident_id,
        call_created=bool(row.inserted),
        flagged=bool(row.flagged) and known_caller,
        repeat_caller=bool(row.repeat_caller) and known_caller,
    )


# Call progress from the AMI tracker (or reconciliation). Facts only move one way: first times
# stay first (LEAST ignores NULLs), the end only later, a terminal state is never left for a live
# one, and the first operator who answered is kept. A call taken as lost with its node
# (siaga112.calls.lost) is the one exception: the node's own record of how it ended, should
# that come after all, replaces the guess. The rows are locked FOR NO KEY UPDATE, as the
# UPDATE itself would: FOR UPDATE waits for the KEY SHARE lock a location (or callback, recording)
# being stored for the call holds, and that transaction's own UPDATE of the call then waits
# behind it: a deadlock (bench/drill, reconciliation beside the location worker).
#
# One statement for a whole batch of calls (the tracker's flush: every call whose state changed
# in the last 50 ms), the progress passed as arrays: one round trip instead of one per call
# (issue 13: the events worker's largest cost was its statements). The calls are locked in id
# order. When a progress can reach a milestone (answered, ended, abandoned, a first overflow
# ring), the timeline lines are inserted by the same statement (_PROGRESS_WITH_EVENTS_SQL):
# atomic with the state they record, with no transaction round trips; otherwise the insert is
# left out, so that the live stream's NOTIFY (a statement trigger) fires only when a line may
# have been added.
_PROGRESS_UPDATE = """
WITH u AS (
    SELECT * FROM unnest(
        CAST(:uniqueid AS text[]), CAST(:state AS text[]),
        CAST(:enqueued_at AS timestamptz[]), CAST(:ringing_at AS timestamptz[]),
        CAST(:answered_at AS timestamptz[]), CAST(:ended_at AS timestamptz[]),
        CAST(:queue AS text[]), CAST(:operator AS text[]), CAST(:hangup_cause AS text[]),
        CAST(:outcome AS text[]), CAST(:overflowed_at AS timestamptz[])
    ) WITH ORDINALITY AS u(uniqueid, state, enqueued_at, ringing_at, answered_at, ended_at,
                           queue, operator, hangup_cause, outcome, overflowed_at, n)
), upd AS (
    UPDATE calls SET
        state = CASE
            WHEN calls.outcome = 'node_lost' AND u.state IN ('ended', 'abandoned') THEN u.state
            WHEN calls.state = 'abandoned' THEN calls.state
            WHEN calls.state = 'ended' AND u.state <> 'abandoned' THEN calls.state
            WHEN u.state IN ('ended', 'abandoned') THEN u.state
            WHEN array_position(ARRAY['offered','queued','ringing','answered'], u.state)
                 < array_position(ARRAY['offered','queued','ringing','answered'], calls.state)
                THEN calls.state
            ELSE u.state
        END,
        enqueued_at = LEAST(calls.enqueued_at, u.enqueued_at),
        ringing_at = LEAST(calls.ringing_at, u.ringing_at),
        answered_at = LEAST(calls.answered_at, u.answered_at),
        overflowed_at = LEAST(calls.overflowed_at, u.overflowed_at),
        ended_at = GREATEST(calls.ended_at, u.ended_at),
        queue = COALESCE(calls.queue, u.queue),
        operator = COALESCE(calls.operator, u.operator),
        hangup_cause = COALESCE(u.hangup_cause, calls.hangup_cause),
        outcome = CASE WHEN u.outcome IS NULL THEN calls.outcome
                       WHEN calls.outcome = 'node_lost'
                            AND u.state NOT IN ('ended', 'abandoned') THEN calls.outcome
                       WHEN calls.outcome = 'abandoned' THEN calls.outcome
                       ELSE u.outcome END,
        updated_at = now()
    FROM (SELECT id, uniqueid, state AS old_state, overflowed_at AS old_overflowed_at
          FROM calls WHERE uniqueid = ANY(CAST(:uniqueid AS text[]))
          ORDER BY id FOR NO KEY UPDATE) AS prev, u
    WHERE calls.id = prev.id AND u.uniqueid = prev.uniqueid
    RETURNING u.n, calls.uniqueid, prev.old_state, calls.state, calls.incident_id,
              calls.operator, calls.answered_at, calls.ended_at, prev.old_overflowed_at,
              calls.overflowed_at
)"""

_PROGRESS_SQL = text(_PROGRESS_UPDATE + "\nSELECT uniqueid FROM upd")

# Two constants joined: no input reaches the text (the values are bound parameters).
_PROGRESS_WITH_EVENTS_SQL = text(
    _PROGRESS_UPDATE  # noqa: S608
    + """, lines AS (
    -- Rung at an overflow destination (supervisors, a neighbouring centre): once.
    SELECT n, 1 AS k, incident_id, overflowed_at AS at, 'call_overflowed' AS kind,
           jsonb_build_object('uniqueid', uniqueid) AS data
    FROM upd
    WHERE overflowed_at IS NOT NULL AND old_overflowed_at IS NULL AND incident_id IS NOT NULL
    UNION ALL
    SELECT n, 2, incident_id,
           COALESCE(CASE WHEN state = 'answered' THEN answered_at ELSE ended_at END, now()),
           CASE state WHEN 'answered' THEN 'call_answered' WHEN 'ended' THEN 'call_ended'
                      ELSE 'call_abandoned' END,
           jsonb_build_object('uniqueid', uniqueid, 'operator', operator)
    FROM upd
    WHERE state IN ('answered', 'ended', 'abandoned') AND old_state <> state
      AND incident_id IS NOT NULL
), ev AS (
    INSERT INTO incident_events (incident_id, at, actor, kind, data)
    SELECT incident_id, at, :actor, kind, data FROM lines ORDER BY n, k
)
SELECT uniqueid FROM upd"""
)

# Progress that may add a line to the timeline (see above).
_MILESTONE_STATES = frozenset({"answered", "ended", "abandoned"})


@dataclass(frozen=True, slots=True)
class CallProgress:
    uniqueid: str
    state: str
    enqueued_at: datetime | None
    ringing_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    queue: str | None
    operator: str | None
    hangup_cause: str | None
    outcome: str | None
    overflowed_at: datetime | None = None


async def apply_progress(
    *, session: Executor, updates: list[CallProgress], actor: str = "system:ami"
) -> set[str]:
    """Applies progress to existing calls; returns the uniqueids that had no row.

    A call reaching answered, ended or abandoned, or first ringing an overflow destination, adds
    a line to its incident's timeline. One statement per run of distinct calls: progress for a
    call already in the run starts the next statement, so that each applies in order."""
    missing: set[str] = set()
    run: list[CallProgress] = []
    seen: set[str] = set()
    for update in updates:
        if update.uniqueid in seen:
            missing |= await _apply_run(session, run, actor)
            run, seen = [], set()
        run.append(update)
        seen.add(update.uniqueid)
    if run:
        missing |= await _apply_run(session, run, actor)
    return missing


async def _apply_run(session: Executor, run: list[CallProgress], actor: str) -> set[str]:
    may_add_lines = any(u.state in _MILESTONE_STATES or u.overflowed_at is not None for u in run)
    params: dict[str, Any] = {
        "uniqueid": [u.uniqueid for u in run],
        "state": [u.state for u in run],
        "enqueued_at": [u.enqueued_at for u in run],
        "ringing_at": [u.ringing_at for u in run],
        "answered_at": [u.answered_at for u in run],
        "ended_at": [u.ended_at for u in run],
        "queue": [_clip(u.queue, 80) for u in run],
        "operator": [_clip(u.operator, 80) for u in run],
        "hangup_cause": [_clip(u.hangup_cause, 80) for u in run],
        "outcome": [u.outcome for u in run],
        "overflowed_at": [u.overflowed_at for u in run],
    }
    if may_add_lines:
        params["actor"] = actor
    sql = _PROGRESS_WITH_EVENTS_SQL if may_add_lines else _PROGRESS_SQL
    found = set((await session.execute(sql, params)).scalars())
    return {u.uniqueid for u in run} - found
