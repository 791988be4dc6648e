"""Calls cut by the loss of their PBX node: a node that died (its AMI session gone too long) or
that came back from a restart takes its channels with it, and no event, no CDR line will ever
end those calls. They are ended here as abandoned with outcome ``node_lost``, so that the
callback worklist (read from abandoned calls) offers the ones with a caller number, like every
other dropped emergency call; anonymous ones are recorded and counted, not offered.

One rule for both cases: a call of the node still open (not ended nor abandoned), offered
before ``before`` and not among the channels the node has now. One statement ends them and
only them, so a repeat, a follower's restart or a second follower after the first ends nothing
twice and adds no second timeline line or audit entry."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

NODE_LOST = "node_lost"

# The rows are locked first, in id order (as the location sweep's done-mark locks its calls),
# so that two multi-row writers of the same calls queue behind each other rather than
# deadlock; a call ended meanwhile is re-checked under its lock and left alone. NO KEY UPDATE,
# the lock an UPDATE of these columns takes anyway: it does not conflict with the KEY SHARE lock
# an insert of a row referencing the call takes (a location, a recording, a callback), so such
# an insert neither waits for this statement nor deadlocks with it.
_END_SQL = text(
    """
WITH target AS (
    SELECT calls.id FROM calls
    WHERE calls.node = CAST(:node AS text) AND calls.state NOT IN ('ended', 'abandoned')
      AND calls.offered_at < :before
      AND NOT (calls.uniqueid = ANY(CAST(:alive AS text[])))
    ORDER BY calls.id
    FOR NO KEY UPDATE
), lost AS (
    UPDATE calls SET state = 'abandoned', outcome = CAST(:outcome AS text),
        ended_at = GREATEST(calls.offered_at, CAST(:at AS timestamptz)),
        updated_at = now()
    FROM target
    WHERE calls.id = target.id AND calls.state NOT IN ('ended', 'abandoned')
    RETURNING calls.id, calls.uniqueid, calls.incident_id, calls.operator, calls.ended_at,
              calls.caller_id_available
), ev AS (
    INSERT INTO incident_events (incident_id, at, actor, kind, data)
    SELECT lost.incident_id, lost.ended_at, CAST(:actor AS text), 'call_abandoned',
           jsonb_build_object('uniqueid', lost.uniqueid, 'operator', lost.operator,
                              'outcome', CAST(:outcome AS text), 'node', CAST(:node AS text),
                              'reason', CAST(:reason AS text))
    FROM lost WHERE lost.incident_id IS NOT NULL
), au AS (
    INSERT INTO audit_events (at, actor, action, entity_type, entity_id, after)
    SELECT lost.ended_at, CAST(:actor AS text), 'call.node_lost', 'call', lost.id::text,
           CAST(:audit AS jsonb) || jsonb_build_object('uniqueid', lost.uniqueid)
    FROM lost
)
SELECT lost.uniqueid, lost.caller_id_available, inc.caller_number
FROM lost LEFT JOIN incidents inc ON inc.id = lost.incident_id
"""
)


@dataclass(frozen=True, slots=True)
class LostCalls:
    """What one pass ended: every call, and how many of them can be called back."""

    uniqueids: list[str]
    with_number: int

    @property
    def without_number(self) -> int:
        return len(self.uniqueids) - self.with_number


async def end_calls_of_lost_node(
    *,
    session: AsyncSession,
    node: str,
    before: datetime,
    at: datetime,
    reason: str,
    actor: str,
    alive: Collection[str] = (),
) -> LostCalls:
    """Ends the calls of ``node`` still open, offered before ``before`` and not in ``alive``
    (channels the node reports now), as cut by the node's loss at ``at``. Caller commits."""
    audit = {"state": "abandoned", "outcome": NODE_LOST, "node": node, "reason": reason}
    rows = (
        await session.execute(
            _END_SQL,
            {
                "outcome": NODE_LOST,
                "at": at,
                "node": node,
                "before": before,
                "alive": list(alive),
                "actor": actor,
                "reason": reason,
                "audit": json.dumps(audit),
            },
        )
    ).all()
    return LostCalls(
        uniqueids=[r.uniqueid for r in rows],
        with_number=sum(1 for r in rows if r.caller_number),
    )
