"""Operators: SIP accounts that are live in Asterisk at once (PJSIP realtime rows written in the
same transaction), and queue sessions (log in/out, pause/resume) through the call-control
protocol. Every write is audited; the database is written first, then Asterisk is asked, and
an Asterisk failure raises so that the caller does not commit."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, check_acts_for
from siaga112.callcontrol.protocol import (
    OVERFLOW_MEMBER_PREFIX,
    CallControl,
    CallControlError,
    QueueMemberState,
)
from siaga112.config import PbxSettings
from siaga112.errors import Conflict, InvalidTransition, NotFound, TelephonyUnavailable
from siaga112.operators.models import Operator, PsAor, PsAuth, PsEndpoint

log = logging.getLogger(__name__)

# PJSIP's default realm (global default_realm): the md5 digest is over user:realm:password.
SIP_REALM = "asterisk"


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """Where operators log in: every queue an operator serves (the main queue first, then the
    low-priority queue of flagged numbers, which queue weights keep behind the main one), and
    extensions that are configured statically."""

    queues: tuple[str, ...]
    static_extensions: frozenset[str]

    @property
    def main(self) -> str:
        return self.queues[0]

    @classmethod
    def for_settings(cls, pbx: PbxSettings) -> QueueTarget:
        return cls(
            queues=(pbx.queue_name, pbx.low_queue_name),
            static_extensions=frozenset(pbx.demo_operators),
        )


def interface(extension: str) -> str:
    return f"PJSIP/{extension}"


def md5_cred(extension: str, password: str) -> str:
    # Asterisk's md5_cred format (RFC 2617 HA1); not a password hash of our choosing.
    return hashlib.md5(f"{extension}:{SIP_REALM}:{password}".encode()).hexdigest()  # noqa: S324


def snapshot(op: Operator) -> dict[str, Any]:
    return {
        "extension": op.extension,
        "name": op.name,
        "enabled": op.enabled,
        "logged_in": op.logged_in,
        "paused": op.paused,
        "pause_reason": op.pause_reason,
    }


def _endpoint_rows(op: Operator) -> tuple[PsEndpoint, PsAor]:
    ext = op.extension
    endpoint = PsEndpoint(
        id=ext,
        transport="transport-udp",
        aors=ext,
        auth=ext,
        context="operators",
        disallow="all",
        allow="ulaw,alaw",
        direct_media="no",
        rtp_symmetric="yes",
        force_rport="yes",
        rewrite_contact="yes",
        callerid=f"Operator {ext} <{ext}>",
    )
    return endpoint, PsAor(id=ext, max_contacts=1, remove_existing="yes")


async def _drop_endpoint(session: AsyncSession, extension: str) -> None:
    await session.execute(delete(PsEndpoint).where(PsEndpoint.id == extension))
    await session.execute(delete(PsAor).where(PsAor.id == extension))


async def _audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    op: Operator,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None,
) -> None:
    await record_audit(
        session=session,
        actor=actor,
        action=action,
        entity_type="operator",
        entity_id=op.extension,
        before=before,
        after=after,
        request_id=request_id,
    )


async def list_operators(*, session: AsyncSession) -> list[Operator]:
    return list((await session.scalars(select(Operator).order_by(Operator.extension))).all())


async def get_operator(
    *, session: AsyncSession, extension: str, for_update: bool = False
) -> Operator:
    stmt = select(Operator).where(Operator.extension == extension)
    if for_update:
        stmt = stmt.with_for_update()
    op = await session.scalar(stmt)
    if op is None:
        raise NotFound(f"operator {extension} not found")
    return op


async def create_operator(
    *,
    session: AsyncSession,
    extension: str,
    name: str,
    target: QueueTarget,
    actor: Actor,
    request_id: str | None,
) -> tuple[Operator, str]:
    """Returns the operator and its generated SIP password (not stored anywhere)."""
    if extension in target.static_extensions:
        raise Conflict(
            f"extension {extension} is configured statically in Asterisk",
            details=[{"field": "body.extension"}],
        )
    password = secrets.token_urlsafe(18)
    op = Operator(extension=extension, name=name, enabled=True, logged_in=False, paused=False)
    session.add(op)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"operator {extension} already exists", details=[{"field": "body.extension"}]
        ) from exc
    endpoint, aor = _endpoint_rows(op)
    session.add_all(
        [
            endpoint,
            aor,
            PsAuth(
                id=extension,
                auth_type="md5",
                username=extension,
                realm=SIP_REALM,
                md5_cred=md5_cred(extension, password),
            ),
        ]
    )
    await session.flush()
    await _audit(session, actor, "operator.create", op, None, snapshot(op), request_id)
    return op, password


async def _remove_from_queue(
    control: CallControl | None, target: QueueTarget, op: Operator
) -> None:
    if control is None:
        raise TelephonyUnavailable("no AMI connection in this process")
    try:
        for queue in target.queues:
            await control.queue_remove(queue=queue, interface=interface(op.extension))
    except (CallControlError, TimeoutError) as exc:
        raise TelephonyUnavailable(str(exc) or "Asterisk did not answer in time") from exc


async def update_operator(
    *,
    session: AsyncSession,
    extension: str,
    name: str | None,
    enabled: bool | None,
    control: CallControl | None,
    target: QueueTarget,
    actor: Actor,
    request_id: str | None,
) -> Operator:
    op = await get_operator(session=session, extension=extension, for_update=True)
    before = snapshot(op)
    if name is not None:
        op.name = name
    if enabled is not None and enabled != op.enabled:
        op.enabled = enabled
        if enabled:
            endpoint, aor = _endpoint_rows(op)
            session.add_all([endpoint, aor])
        else:
            # No endpoint: REGISTER and calls to it fail at once (realtime, no cache).
            await _drop_endpoint(session, extension)
            was_logged_in = op.logged_in
            op.logged_in = op.paused = False
            op.pause_reason = None
            if was_logged_in:
                await session.flush()
                await _remove_from_queue(control, target, op)
    after = snapshot(op)
    if after != before:
        await session.flush()
        await _audit(session, actor, "operator.update", op, before, after, request_id)
    return op


async def delete_operator(
    *,
    session: AsyncSession,
    extension: str,
    control: CallControl | None,
    target: QueueTarget,
    actor: Actor,
    request_id: str | None,
) -> None:
    op = await get_operator(session=session, extension=extension, for_update=True)
    before = snapshot(op)
    await _drop_endpoint(session, extension)
    await session.execute(delete(PsAuth).where(PsAuth.id == extension))
    await session.delete(op)
    await session.flush()
    await _audit(session, actor, "operator.delete", op, before, None, request_id)
    if before["logged_in"]:
        await _remove_from_queue(control, target, op)


def _require(control: CallControl | None) -> CallControl:
    if control is None:
        raise TelephonyUnavailable("no AMI connection in this process (serve --api-only?)")
    return control


async def set_session(
    *,
    session: AsyncSession,
    extension: str,
    logged_in: bool | None = None,
    pause_reason: str | None = None,
    resume: bool = False,
    control: CallControl | None,
    target: QueueTarget,
    actor: Actor,
    request_id: str | None,
) -> Operator:
    """Log in/out (``logged_in``), pause with a reason (``pause_reason``) or ``resume``. An
    operator key acts only on its own operator; supervisors and admins on anyone's (the audit
    row then says it acted for another)."""
    for_other = check_acts_for(actor, extension)
    ctl = _require(control)
    op = await get_operator(session=session, extension=extension, for_update=True)
    if not op.enabled:
        raise InvalidTransition(f"operator {extension} is disabled")
    before = snapshot(op)
    if logged_in is not None:
        op.logged_in = logged_in
        op.paused = False
        op.pause_reason = None
        action = "operator.login" if logged_in else "operator.logout"
    else:
        if not op.logged_in:
            raise InvalidTransition(f"operator {extension} is not logged in")
        op.paused = not resume
        op.pause_reason = None if resume else pause_reason
        action = "operator.resume" if resume else "operator.pause"
    await session.flush()
    after = snapshot(op)
    if for_other:
        after |= {"acting_for_operator": extension, "actor_role": actor.role.value}
    await _audit(session, actor, action, op, before, after, request_id)
    iface = interface(extension)
    try:
        # Every queue the operator serves: the main queue and the flagged numbers' queue.
        # Each action is idempotent, so a retry after a partial failure completes it.
        for queue in target.queues:
            if logged_in is True:
                await ctl.queue_add(queue=queue, interface=iface, member_name=extension)
            elif logged_in is False:
                await ctl.queue_remove(queue=queue, interface=iface)
            else:
                await ctl.queue_pause(
                    queue=queue, interface=iface, paused=op.paused, reason=op.pause_reason or ""
                )
    except (CallControlError, TimeoutError) as exc:
        raise TelephonyUnavailable(str(exc) or "Asterisk did not answer in time") from exc
    return op


async def live_states(
    *, control: CallControl | None, target: QueueTarget
) -> dict[str, QueueMemberState] | None:
    """Operators in the main queue now, by extension (overflow destinations left out); None
    when Asterisk cannot be asked."""
    if control is None:
        return None
    try:
        members = await control.queue_members(queue=target.main)
    except (CallControlError, TimeoutError):
        return None
    return {
        m.interface.removeprefix("PJSIP/"): m
        for m in members
        if not m.name.startswith(OVERFLOW_MEMBER_PREFIX)
    }


async def reapply_sessions(
    *, session: AsyncSession, control: CallControl, target: QueueTarget
) -> int:
    """After Asterisk (re)starts: logged-in operators are members of every queue they serve
    again, paused as they were. Returns how many operators were re-applied."""
    rows = (
        await session.scalars(
            select(Operator).where(Operator.enabled.is_(True), Operator.logged_in.is_(True))
        )
    ).all()
    for op in rows:
        iface = interface(op.extension)
        for queue in target.queues:
            await control.queue_add(queue=queue, interface=iface, member_name=op.extension)
            if op.paused:
                await control.queue_pause(
                    queue=queue, interface=iface, paused=True, reason=op.pause_reason or ""
                )
    return len(rows)


async def apply_accounts(*, control: CallControl | None) -> bool:
    """After an account change is committed: let res_pjsip see it (see
    ``reload_sip_accounts``). Best effort: the account itself is live either way, and every
    Asterisk start loads all accounts. True when Asterisk took it."""
    if control is None:
        return False
    try:
        await control.reload_sip_accounts()
    except (CallControlError, TimeoutError) as exc:
        log.warning("PJSIP reload after an operator change failed: %s", exc or "timeout")
        return False
    return True
