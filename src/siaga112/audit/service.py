"""Writing audit events; called inside the same transaction as the change it describes."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.models import AuditEvent


class AuditActor(Protocol):
    """Who acted, as the audit trail names them (`siaga112.auth.service.Actor`)."""

    @property
    def label(self) -> str: ...

    @property
    def key_id(self) -> str | None: ...


async def record_audit(
    *,
    session: AsyncSession,
    actor: AuditActor,
    action: str,
    entity_type: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            actor=actor.label,
            actor_key_id=actor.key_id,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
            request_id=request_id,
        )
    )
