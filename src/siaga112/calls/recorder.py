"""Writing calls and their incidents from the telephony side.

`record_incoming` runs on the AGI hot path: one statement, one round trip, that opens the
call's incident (once per Asterisk Linkedid), its timeline line and audit event, and the call
row (once per Uniqueid). Replays of the same AGI request change nothing and return the same ids.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.incidents.models import Incident, IncidentEvent

SYSTEM_AGI = "system:agi"

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
    session: AsyncSession,
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
# that come after all, replaces the guess. The row is locked FOR NO KEY UPDATE, as the
# UPDATE itself would: FOR UPDATE waits for the KEY SHARE lock a location (or callback, recording)
# being stored for the call holds, and that transaction's own UPDATE of the call then waits
# behind it: a deadlock (bench/drill, reconciliation beside the location worker).
_PROGRESS_SQL = text(
    """
UPDATE calls SET
    state = CASE
        WHEN calls.outcome = 'node_lost' AND CAST(:state AS text) IN ('ended', 'abandoned')
            THEN CAST(:state AS text)
        WHEN calls.state = 'abandoned' THEN calls.state
        WHEN calls.state = 'ended' AND CAST(:state AS text) <> 'abandoned' THEN calls.state
        WHEN CAST(:state AS text) IN ('ended', 'abandoned') THEN CAST(:state AS text)
        WHEN array_position(ARRAY['offered','queued','ringing','answered'], CAST(:state AS text))
             < array_position(ARRAY['offered','queued','ringing','answered'], calls.state)
            THEN calls.state
        ELSE CAST(:state AS text)
    END,
    enqueued_at = LEAST(calls.enqueued_at, CAST(:enqueued_at AS timestamptz)),
    ringing_at = LEAST(calls.ringing_at, CAST(:ringing_at AS timestamptz)),
    answered_at = LEAST(calls.answered_at, CAST(:answered_at AS timestamptz)),
    overflowed_at = LEAST(calls.overflowed_at, CAST(:overflowed_at AS timestamptz)),
    ended_at = GREATEST(calls.ended_at, CAST(:ended_at AS timestamptz)),
    queue = COALESCE(calls.queue, CAST(:queue AS text)),
    operator = COALESCE(calls.operator, CAST(:operator AS text)),
    hangup_cause = COALESCE(CAST(:hangup_cause AS text), calls.hangup_cause),
    outcome = CASE WHEN CAST(:outcome AS text) IS NULL THEN calls.outcome
                   WHEN calls.outcome = 'node_lost'
                        AND CAST(:state AS text) NOT IN ('ended', 'abandoned') THEN calls.outcome
                   WHEN calls.outcome = 'abandoned' THEN calls.outcome
                   ELSE CAST(:outcome AS text) END,
    updated_at = now()
FROM (SELECT id, state AS old_state, overflowed_at AS old_overflowed_at
      FROM calls WHERE uniqueid = :uniqueid FOR NO KEY UPDATE) AS prev
WHERE calls.id = prev.id
RETURNING calls.uniqueid, prev.old_state, calls.state, calls.incident_id, calls.operator,
          calls.answered_at, calls.ended_at, prev.old_overflowed_at, calls.overflowed_at
"""
)


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


# Call milestones worth a line in the incident's timeline.
_MILESTONES = {"answered": "call_answered", "ended": "call_ended", "abandoned": "call_abandoned"}


async def apply_progress(
    *, session: AsyncSession, updates: list[CallProgress], actor: str = "system:ami"
) -> set[str]:
    """Applies progress to existing calls; returns the uniqueids that had no row.

    A call reaching answered, ended or abandoned, or first ringing an overflow destination, adds
    a line to its incident's timeline."""
    missing: set[str] = set()
    events: list[dict[str, Any]] = []
    for update in updates:
        params = {
            "uniqueid": update.uniqueid,
            "state": update.state,
            "enqueued_at": update.enqueued_at,
            "ringing_at": update.ringing_at,
            "answered_at": update.answered_at,
            "ended_at": update.ended_at,
            "queue": _clip(update.queue, 80),
            "operator": _clip(update.operator, 80),
            "hangup_cause": _clip(update.hangup_cause, 80),
            "outcome": update.outcome,
            "overflowed_at": update.overflowed_at,
        }
        row = (await session.execute(_PROGRESS_SQL, params)).first()
        if row is None:
            missing.add(update.uniqueid)
            continue
        if (
            row.overflowed_at is not None
            and row.old_overflowed_at is None
            and row.incident_id is not None
        ):
            # Rung at an overflow destination (supervisors, a neighbouring centre): once.
            events.append(
                {
                    "incident_id": row.incident_id,
                    "actor": actor,
                    "kind": "call_overflowed",
                    "data": {"uniqueid": row.uniqueid},
                    "at": row.overflowed_at,
                }
            )
        kind = _MILESTONES.get(row.state)
        if kind is not None and row.old_state != row.state and row.incident_id is not None:
            at = row.ended_at if row.state != "answered" else row.answered_at
            data = {"uniqueid": row.uniqueid, "operator": row.operator}
            events.append(
                {
                    "incident_id": row.incident_id,
                    "actor": actor,
                    "kind": kind,
                    "data": data,
                    "at": at or datetime.now(UTC),
                }
            )
    if events:
        await session.execute(insert(IncidentEvent), events)
    return missing
