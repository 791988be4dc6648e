"""The callback worklist: abandoned and silent calls with a number to call back, and attempts to
call them back from an operator's phone.

On the worklist: calls abandoned in the queue (``calls.state = 'abandoned'``) and calls whose
incident is classified ``ghost`` (silent), newest first. Only callers with a number: anonymous,
restricted and SIM-less callers cannot be called back, and are counted apart. The list is read
from the calls themselves, so nothing can be missing from it; a ``callbacks`` row appears at
the first attempt and keeps the claim, the counts and the last outcome.

Status, derived when read so that it never goes stale:

- ``in_progress``: an operator claimed it and the attempt is under way;
- ``reached``, or ``not_needed`` set by an operator: done;
- ``not_needed`` by itself: the same number got through after this call, either a later call
  answered by an operator or a callback that reached the caller;
- ``no_answer``, ``busy``, ``failed``: how the last attempt ended;
- ``pending``: nobody has tried yet.

An attempt (:func:`claim`) is written and committed first, then placed (:func:`place`): AMI
Originate rings the operator's extension, then the caller through the carrier trunk. Its
outcome comes later from the AMI (:func:`record_leg_fact`), or, if it never comes, the attempt
is closed as failed once its time is up (:func:`expire_stale_attempts`). Claims are exclusive
per number and per operator, enforced by the database (partial unique indexes), so two
operators never call one caller at the same time. Every write is audited and lands on the
incident's timeline (``callback_attempted``, ``callback_result``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from siaga112.api.pagination import keyset, page
from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, check_acts_for, system_actor
from siaga112.callbacks.legs import (
    CALLBACK_CONTEXT,
    LegFact,
    LegFacts,
    Outcome,
    channel_id,
    decide,
    merge,
)
from siaga112.callbacks.models import Callback, CallbackAttempt
from siaga112.callcontrol.protocol import CallControl, CallControlError
from siaga112.callcontrol.service import dial_digits
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.errors import (
    CallbackInProgress,
    CallerIdUnavailable,
    InvalidTransition,
    NotFound,
    TelephonyUnavailable,
)
from siaga112.incidents.models import Incident
from siaga112.incidents.service import add_timeline_event
from siaga112.operators.models import Operator

STATUSES = ("pending", "in_progress", "reached", "no_answer", "busy", "failed", "not_needed")
REASONS = ("abandoned", "silent")
# Attempt outcomes beyond the AMI's: Asterisk refused the Originate, or no outcome ever came.
NOT_PLACED = "not_placed"
# Outcomes after which the caller was never dialled: the worklist keeps its earlier status.
_NOT_DIALLED = frozenset({Outcome.OPERATOR_UNAVAILABLE.value, NOT_PLACED})
AMI_ACTOR = system_actor("ami")
SWEEP_ACTOR = system_actor("callbacks")


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    operator_ring_s: int
    caller_ring_s: int
    caller_id: str
    outcome_margin_s: int
    # Operator extensions configured in pjsip.conf rather than created through the API.
    static_extensions: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        conf = settings.callbacks
        return cls(
            operator_ring_s=conf.operator_ring_s,
            caller_ring_s=conf.caller_ring_s,
            caller_id=conf.caller_id,
            outcome_margin_s=conf.outcome_margin_s,
            static_extensions=frozenset(settings.pbx.demo_operators),
        )

    @property
    def lease(self) -> timedelta:
        """How long an attempt may wait for its outcome."""
        return timedelta(seconds=self.operator_ring_s + self.caller_ring_s + self.outcome_margin_s)


@dataclass(frozen=True, slots=True)
class WorklistItem:
    call_id: uuid.UUID
    incident_id: int | None
    number: str
    reason: str
    status: str
    offered_at: datetime
    ended_at: datetime | None
    waited_s: float | None
    queue: str | None
    attempts: int
    last_attempt_at: datetime | None
    last_attempt_by: str | None
    last_outcome: str | None
    claimed_by: str | None
    operator_extension: str | None
    claim_expires_at: datetime | None
    reached_at: datetime | None
    answered_later_call_id: uuid.UUID | None
    note: str | None


@dataclass(frozen=True, slots=True)
class WorklistPage:
    items: list[WorklistItem]
    next_cursor: str | None
    # Calls on the worklist's filters that came without a number: nobody can call them back.
    anonymous: int


@dataclass(frozen=True, slots=True)
class PlannedAttempt:
    attempt_id: int
    call_id: uuid.UUID
    channel_id: str
    operator_extension: str
    number: str
    dialled: str
    expires_at: datetime


# --- the worklist ------------------------------------------------------------------------------


def _worklist() -> tuple[Select[Any], ColumnElement[str]]:
    """Worklist rows with their derived status (and that status, to filter on); callers add
    filters, order and limit."""
    later = aliased(Call)
    later_incident = aliased(Incident)
    # The first call from the same number that an operator answered after this one.
    answered_later = (
        select(later.id.label("call_id"))
        .join(later_incident, later_incident.id == later.incident_id)
        .where(
            later_incident.caller_number == Incident.caller_number,
            later.answered_at.is_not(None),
            later.offered_at > Call.offered_at,
        )
        .order_by(later.offered_at)
        .limit(1)
        .lateral("answered_later")
    )
    other = aliased(Callback)
    reached_later = exists().where(
        other.number == Incident.caller_number, other.reached_at > Call.offered_at
    )
    status: ColumnElement[str] = case(
        (Callback.status == "in_progress", "in_progress"),
        (Callback.status.in_(("reached", "not_needed")), Callback.status),
        (or_(answered_later.c.call_id.is_not(None), reached_later), "not_needed"),
        else_=func.coalesce(Callback.status, "pending"),
    )
    reason = case((Call.state == "abandoned", "abandoned"), else_="silent").label("reason")
    stmt = (
        select(
            Call,
            Incident.caller_number.label("number"),
            Callback,
            status.label("status"),
            reason,
            answered_later.c.call_id.label("answered_later_call_id"),
        )
        .join(Incident, Incident.id == Call.incident_id)
        .outerjoin(Callback, Callback.call_id == Call.id)
        .outerjoin(answered_later, true())
        .where(or_(Call.state == "abandoned", Incident.classification == "ghost"))
    )
    return stmt, status


def _candidates(
    stmt: Select[Any],
    *,
    reason: list[str] | None,
    offered_from: datetime | None,
    offered_to: datetime | None,
) -> Select[Any]:
    if reason:
        conditions = []
        if "abandoned" in reason:
            conditions.append(Call.state == "abandoned")
        if "silent" in reason:
            conditions.append(and_(Call.state != "abandoned", Incident.classification == "ghost"))
        stmt = stmt.where(or_(*conditions))
    if offered_from is not None:
        stmt = stmt.where(Call.offered_at >= offered_from)
    if offered_to is not None:
        stmt = stmt.where(Call.offered_at < offered_to)
    return stmt


def _item(row: Any) -> WorklistItem:
    call: Call = row.Call
    cb: Callback | None = row.Callback
    waited = None
    left_queue = call.answered_at or call.ended_at
    if call.enqueued_at is not None and left_queue is not None:
        waited = max(0.0, (left_queue - call.enqueued_at).total_seconds())
    in_progress = row.status == "in_progress"
    return WorklistItem(
        call_id=call.id,
        incident_id=call.incident_id,
        number=row.number,
        reason=row.reason,
        status=row.status,
        offered_at=call.offered_at,
        ended_at=call.ended_at,
        waited_s=waited,
        queue=call.queue,
        attempts=cb.attempts if cb else 0,
        last_attempt_at=cb.last_attempt_at if cb else None,
        last_attempt_by=cb.last_attempt_by if cb else None,
        last_outcome=cb.last_outcome if cb else None,
        claimed_by=cb.claimed_by if cb and in_progress else None,
        operator_extension=cb.operator_extension if cb and in_progress else None,
        claim_expires_at=cb.claim_expires_at if cb and in_progress else None,
        reached_at=cb.reached_at if cb else None,
        answered_later_call_id=row.answered_later_call_id,
        note=cb.note if cb else None,
    )


async def list_callbacks(
    *,
    session: AsyncSession,
    status: list[str] | None,
    reason: list[str] | None,
    offered_from: datetime | None,
    offered_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> WorklistPage:
    worklist, derived_status = _worklist()
    stmt = _candidates(
        worklist, reason=reason, offered_from=offered_from, offered_to=offered_to
    ).where(Incident.caller_number.is_not(None))
    if status:
        stmt = stmt.where(derived_status.in_(status))
    stmt = keyset(
        stmt, at=Call.offered_at, ident=Call.id, id_kind="uuid", cursor=cursor, limit=limit
    )
    items, next_cursor = page(
        [_item(r) for r in (await session.execute(stmt)).all()],
        limit=limit,
        key=lambda item: (item.offered_at, item.call_id),
    )
    anonymous_stmt = _candidates(
        select(func.count())
        .select_from(Call)
        .join(Incident, Incident.id == Call.incident_id)
        .where(or_(Call.state == "abandoned", Incident.classification == "ghost")),
        reason=reason,
        offered_from=offered_from,
        offered_to=offered_to,
    ).where(Incident.caller_number.is_(None))
    anonymous = await session.scalar(anonymous_stmt) or 0
    return WorklistPage(items=items, next_cursor=next_cursor, anonymous=anonymous)


async def _one(session: AsyncSession, call_id: uuid.UUID) -> WorklistItem:
    worklist, _ = _worklist()
    row = (await session.execute(worklist.where(Call.id == call_id))).first()
    if row is None:
        raise NotFound(f"call {call_id} is not on the callback worklist (not abandoned or silent)")
    if row.number is None:
        raise CallerIdUnavailable(
            "this call came without a number (anonymous, restricted or no SIM): it cannot be "
            "called back",
            details=[{"field": "path.call_id"}],
        )
    return _item(row)


async def get_callback(
    *, session: AsyncSession, call_id: uuid.UUID
) -> tuple[WorklistItem, list[CallbackAttempt]]:
    item = await _one(session, call_id)
    attempts = (
        await session.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.call_id == call_id)
            .order_by(CallbackAttempt.started_at.desc(), CallbackAttempt.id.desc())
        )
    ).all()
    return item, list(attempts)


# --- attempts ----------------------------------------------------------------------------------


async def _check_operator(session: AsyncSession, extension: str, policy: CallbackPolicy) -> None:
    if extension in policy.static_extensions:
        return
    op = await session.scalar(select(Operator).where(Operator.extension == extension))
    if op is None:
        raise NotFound(
            f"operator {extension} not found", details=[{"field": "body.operator_extension"}]
        )
    if not op.enabled:
        raise InvalidTransition(
            f"operator {extension} is disabled", details=[{"field": "body.operator_extension"}]
        )


def _snapshot(cb: Callback) -> dict[str, Any]:
    return {
        "status": cb.status,
        "attempts": cb.attempts,
        "operator_extension": cb.operator_extension,
        "claimed_by": cb.claimed_by,
    }


async def claim(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    operator_extension: str,
    force: bool,
    policy: CallbackPolicy,
    actor: Actor,
    request_id: str | None,
    now: datetime | None = None,
) -> PlannedAttempt:
    """Claims the call for ``operator_extension`` and writes the attempt; the caller commits
    before placing it (:func:`place`), so that its events always find it."""
    now = now or datetime.now(UTC)
    await expire_stale_attempts(session=session, now=now)
    item = await _one(session, call_id)
    if item.status == "in_progress":
        raise CallbackInProgress(
            f"{item.operator_extension} is already calling {item.number} back",
            details=[
                {
                    "operator_extension": item.operator_extension,
                    "claimed_by": item.claimed_by,
                    "claim_expires_at": item.claim_expires_at.isoformat()
                    if item.claim_expires_at
                    else None,
                }
            ],
        )
    if item.status in ("reached", "not_needed") and not force:
        raise InvalidTransition(
            f'callback of call {call_id} is {item.status}; send "force": true to call anyway',
            details=[{"field": "body.force", "status": item.status}],
        )
    await _check_operator(session, operator_extension, policy)
    dialled = dial_digits(item.number)
    if len(dialled) < 3:
        raise CallerIdUnavailable(
            f"{item.number!r} is not a number that can be dialled",
            details=[{"field": "path.call_id"}],
        )
    expires_at = now + policy.lease
    token = uuid.uuid4().hex
    try:
        async with session.begin_nested():
            cb = await session.get(Callback, call_id, with_for_update=True, populate_existing=True)
            if cb is None:
                cb = Callback(
                    call_id=call_id,
                    incident_id=item.incident_id,
                    number=item.number,
                    status="pending",
                    attempts=0,
                )
                session.add(cb)
            elif cb.status == "in_progress":
                # Claimed by a request that committed while this one read the worklist.
                raise CallbackInProgress(
                    f"{cb.operator_extension} is already calling {item.number} back",
                    details=[{"operator_extension": cb.operator_extension}],
                )
            before = _snapshot(cb)
            cb.status = "in_progress"
            cb.attempts = (cb.attempts or 0) + 1
            cb.claimed_by = actor.label
            cb.operator_extension = operator_extension
            cb.claim_expires_at = expires_at
            cb.last_attempt_at = now
            cb.last_attempt_by = operator_extension
            attempt = CallbackAttempt(
                call_id=call_id,
                channel_id=channel_id(token),
                operator_extension=operator_extension,
                actor=actor.label,
                number=item.number,
                dialled=dialled,
                status_before=item.status,
                started_at=now,
                expires_at=expires_at,
            )
            session.add(attempt)
            await session.flush()
    except IntegrityError as exc:
        if "ux_callback_attempts_operator_open" in str(exc.orig):
            raise CallbackInProgress(
                f"operator {operator_extension} already has a callback under way",
                details=[{"field": "body.operator_extension"}],
            ) from exc
        if any(
            name in str(exc.orig) for name in ("ux_callbacks_number_in_progress", "pk_callbacks")
        ):
            raise CallbackInProgress(
                f"someone is already calling {item.number} back",
                details=[{"field": "path.call_id"}],
            ) from exc
        raise
    data = {
        "call_id": str(call_id),
        "attempt_id": attempt.id,
        "operator_extension": operator_extension,
        "number": item.number,
        "attempt": cb.attempts,
    }
    await record_audit(
        session=session,
        actor=actor,
        action="callback.attempt",
        entity_type="callback",
        entity_id=str(call_id),
        before=before,
        after=_snapshot(cb)
        | {"attempt_id": attempt.id, "channel_id": attempt.channel_id}
        | _acting_for(actor, operator_extension),
        request_id=request_id,
    )
    if item.incident_id is not None:
        add_timeline_event(
            session,
            incident_id=item.incident_id,
            actor=actor,
            kind="callback_attempted",
            data=data,
        )
    await session.flush()
    return PlannedAttempt(
        attempt_id=attempt.id,
        call_id=call_id,
        channel_id=attempt.channel_id,
        operator_extension=operator_extension,
        number=item.number,
        dialled=dialled,
        expires_at=expires_at,
    )


async def place(
    *, control: CallControl | None, attempt: PlannedAttempt, policy: CallbackPolicy
) -> None:
    """AMI Originate of a committed attempt. Raises :class:`TelephonyUnavailable` when there is
    no AMI here or Asterisk refused; a timeout leaves the attempt open (it may still ring)."""
    if control is None:
        raise TelephonyUnavailable("no AMI connection in this process (serve --api-only?)")
    await control.originate(
        endpoint=f"PJSIP/{attempt.operator_extension}",
        context=CALLBACK_CONTEXT,
        exten=attempt.dialled,
        # What the operator's phone shows while it rings: whom it is about to call.
        caller_id=f'"Panggil balik" <{attempt.number}>',
        ring_s=policy.operator_ring_s,
        channel_id=attempt.channel_id,
        variables={
            "SIAGA112_CALLBACK": attempt.channel_id.rsplit("-", 1)[-1],
            "SIAGA112_CALLBACK_RING_S": str(policy.caller_ring_s),
            "SIAGA112_CALLBACK_CID": policy.caller_id,
        },
    )


def _acting_for(actor: Actor, extension: str) -> dict[str, Any]:
    """Marks an audit row whose actor acted for an operator other than its own."""
    if actor.operator_extension == extension:
        return {}
    return {"acting_for_operator": extension, "actor_role": actor.role.value}


async def call_back(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    operator_extension: str,
    force: bool,
    control: CallControl | None,
    policy: CallbackPolicy,
    actor: Actor,
    request_id: str | None,
) -> PlannedAttempt:
    """Claim, commit, place. When Asterisk refuses, the attempt is closed as ``not_placed``
    (the worklist keeps its earlier status) and the refusal raised. An operator key rings only
    its own operator's phone; supervisors ring anyone's (audited as acting for another)."""
    check_acts_for(actor, operator_extension)
    if control is None:
        raise TelephonyUnavailable("no AMI connection in this process (serve --api-only?)")
    attempt = await claim(
        session=session,
        call_id=call_id,
        operator_extension=operator_extension,
        force=force,
        policy=policy,
        actor=actor,
        request_id=request_id,
    )
    await session.commit()
    try:
        await place(control=control, attempt=attempt, policy=policy)
    except CallControlError as exc:
        await close_attempt(
            session=session,
            channel_id=attempt.channel_id,
            outcome=NOT_PLACED,
            detail=str(exc),
            actor=actor,
        )
        await session.commit()
        raise TelephonyUnavailable(str(exc)) from exc
    except TimeoutError as exc:
        raise TelephonyUnavailable(
            "Asterisk did not answer in time; the attempt stays open until "
            f"{attempt.expires_at.isoformat()} in case it rings"
        ) from exc
    return attempt


def _facts(attempt: CallbackAttempt) -> LegFacts:
    return LegFacts(
        originated=attempt.originated,
        originate_reason=attempt.originate_reason,
        operator_answered_at=attempt.operator_answered_at,
        dial_status=attempt.dial_status,
        dial_ended_at=attempt.dial_ended_at,
        hungup_at=attempt.ended_at,
        hangup_cause=attempt.hangup_cause,
    )


async def record_leg_fact(*, session: AsyncSession, fact: LegFact) -> bool:
    """Merges one AMI fact into its attempt and decides the outcome once it can; False when no
    attempt has that token (another deployment's, or written by a rolled-back request)."""
    attempt = await session.scalar(
        select(CallbackAttempt)
        .where(CallbackAttempt.channel_id == channel_id(fact.token))
        .with_for_update()
    )
    if attempt is None:
        return False
    facts = merge(_facts(attempt), fact)
    attempt.originated = facts.originated
    attempt.originate_reason = facts.originate_reason
    attempt.operator_answered_at = facts.operator_answered_at
    attempt.dial_status = facts.dial_status
    attempt.dial_ended_at = facts.dial_ended_at
    attempt.ended_at = facts.hungup_at
    attempt.hangup_cause = (facts.hangup_cause or "")[:80] or None
    outcome = decide(facts)
    if attempt.outcome is None and outcome is not None:
        await _decide(session, attempt, outcome.value, actor=AMI_ACTOR, detail=None)
    await session.flush()
    return True


async def close_attempt(
    *,
    session: AsyncSession,
    channel_id: str,
    outcome: str,
    detail: str,
    actor: Actor,
) -> None:
    """Closes an open attempt without the AMI's word (refused, or timed out)."""
    attempt = await session.scalar(
        select(CallbackAttempt).where(CallbackAttempt.channel_id == channel_id).with_for_update()
    )
    if attempt is not None and attempt.outcome is None:
        await _decide(session, attempt, outcome, actor=actor, detail=detail)
        await session.flush()


async def expire_stale_attempts(*, session: AsyncSession, now: datetime | None = None) -> int:
    """Attempts whose outcome never came within their time are closed as failed, releasing
    their claim (events lost while the AMI was down, or siaga112 restarted mid-attempt)."""
    now = now or datetime.now(UTC)
    stale = (
        await session.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.outcome.is_(None), CallbackAttempt.expires_at < now)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for attempt in stale:
        await _decide(
            session,
            attempt,
            Outcome.FAILED.value,
            actor=SWEEP_ACTOR,
            detail="no outcome from Asterisk in time",
        )
    if stale:
        await session.flush()
    return len(stale)


async def _decide(
    session: AsyncSession,
    attempt: CallbackAttempt,
    outcome: str,
    *,
    actor: Actor,
    detail: str | None,
) -> None:
    now = datetime.now(UTC)
    attempt.outcome = outcome
    attempt.decided_at = now
    if detail and not attempt.hangup_cause:
        attempt.hangup_cause = detail[:80]
    cb = await session.get(Callback, attempt.call_id, with_for_update=True, populate_existing=True)
    if cb is None:  # pragma: no cover - attempts cascade with their callback
        return
    before = _snapshot(cb)
    cb.status = attempt.status_before if outcome in _NOT_DIALLED else outcome
    if outcome == Outcome.REACHED.value:
        cb.reached_at = attempt.dial_ended_at or now
    cb.last_outcome = outcome
    cb.claimed_by = None
    cb.operator_extension = None
    cb.claim_expires_at = None
    data = {
        "call_id": str(attempt.call_id),
        "attempt_id": attempt.id,
        "operator_extension": attempt.operator_extension,
        "outcome": outcome,
        "dial_status": attempt.dial_status,
        "status": cb.status,
    } | ({"detail": detail} if detail else {})
    await record_audit(
        session=session,
        actor=actor,
        action="callback.result",
        entity_type="callback",
        entity_id=str(attempt.call_id),
        before=before,
        after=_snapshot(cb) | {"attempt_id": attempt.id, "outcome": outcome},
    )
    if cb.incident_id is not None:
        add_timeline_event(
            session, incident_id=cb.incident_id, actor=actor, kind="callback_result", data=data
        )


async def dismiss(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    note: str,
    actor: Actor,
    request_id: str | None,
) -> WorklistItem:
    """An operator closes a callback as not needed (e.g. the caller was reached another way)."""
    item = await _one(session, call_id)
    if item.status == "in_progress":
        raise CallbackInProgress(
            f"{item.operator_extension} is calling {item.number} back now",
            details=[{"operator_extension": item.operator_extension}],
        )
    if item.status == "reached":
        raise InvalidTransition(f"callback of call {call_id} already reached the caller")
    cb = await session.get(Callback, call_id, with_for_update=True, populate_existing=True)
    if cb is None:
        cb = Callback(
            call_id=call_id,
            incident_id=item.incident_id,
            number=item.number,
            status=item.status,
            attempts=0,
        )
        session.add(cb)
    before = _snapshot(cb) | {"status": item.status}
    cb.status = "not_needed"
    cb.note = note
    await session.flush()
    await record_audit(
        session=session,
        actor=actor,
        action="callback.dismiss",
        entity_type="callback",
        entity_id=str(call_id),
        before=before,
        after=_snapshot(cb) | {"note": note},
        request_id=request_id,
    )
    if item.incident_id is not None:
        add_timeline_event(
            session,
            incident_id=item.incident_id,
            actor=actor,
            kind="callback_dismissed",
            data={"call_id": str(call_id), "note": note, "status_before": item.status},
        )
    await session.flush()
    return await _one(session, call_id)
