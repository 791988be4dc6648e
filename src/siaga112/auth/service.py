"""Creating, finding and revoking API keys. Keys are random; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.models import ApiKey
from siaga112.auth.roles import ROLE_PERMISSIONS, Permission, Role
from siaga112.errors import Forbidden, InvalidRequest, NotFound

KEY_PREFIX = "s112_"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: an API key, a person signed in to the console, or the system itself
    (AGI, AMI tracker, CLI)."""

    name: str
    role: Role
    key_id: str | None = None
    # Set only for Role.AGENCY keys and users: the one agency whose dispatches they may see.
    agency_id: int | None = None
    # Set only for Role.OPERATOR keys and console users: the operator (extension) they act as.
    operator_extension: str | None = None
    # A console user (siaga112.accounts): `name` is the username.
    user_id: int | None = None

    @property
    def label(self) -> str:
        if self.user_id is not None:
            return f"user:{self.name}"
        return f"key:{self.name}" if self.key_id else f"system:{self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


class OperatorKeyUnbound(Forbidden):
    """An operator key without an operator (`--extension`) acts on no queue session or phone."""

    code = "operator_key_unbound"


class NotOwnOperator(Forbidden):
    """An operator key acts only as its own operator; supervisors act for others."""

    code = "not_own_operator"


def check_acts_for(actor: Actor, extension: str) -> bool:
    """Whether `actor` may act for the operator `extension`; raises when it may not.

    Returns True when the actor acts for another operator (a supervisor, admin or the
    system), so that the audit row says so."""
    if actor.role is Role.OPERATOR:
        if actor.operator_extension is None:
            raise OperatorKeyUnbound(
                "this operator key is not bound to an operator "
                "(create it with `siaga112 apikey create --role operator --extension EXT`)"
            )
        if actor.operator_extension != extension:
            raise NotOwnOperator(
                f"an operator key acts only as operator {actor.operator_extension}",
                details=[{"field": "extension"}],
            )
        return False
    if not actor.can(Permission.MANAGE_OPERATORS) and actor.key_id is not None:
        raise Forbidden(f"role {actor.role.value} may not act for operators")
    return actor.operator_extension != extension


def system_actor(name: str) -> Actor:
    return Actor(name=name, role=Role.ADMIN)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AgencyRef:
    """The agency an agency key is bound to."""

    id: int
    code: str


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: uuid.UUID
    name: str
    role: Role
    raw: str
    agency_code: str | None = None
    operator_extension: str | None = None
    expires_at: datetime | None = None


_EXTENSION = re.compile(r"[0-9]{1,8}")
# Longest expiry a key may be given at creation (ten years); no expiry is also possible.
MAX_EXPIRY_DAYS = 3650


async def create_key(
    *,
    session: AsyncSession,
    name: str,
    role: Role,
    actor: Actor,
    agency: AgencyRef | None = None,
    operator_extension: str | None = None,
    expires_in_days: int | None = None,
) -> CreatedKey:
    """A new key; ``agency`` (see `siaga112.agencies.service.agency_ref`) is required for, and
    only for, the agency role; ``operator_extension`` is allowed only for the operator role."""
    if operator_extension is not None:
        if role is not Role.OPERATOR:
            raise InvalidRequest(
                f"only operator keys act as an operator, not {role.value} keys",
                details=[{"field": "extension"}],
            )
        if not _EXTENSION.fullmatch(operator_extension):
            raise InvalidRequest(
                "an operator extension is 1 to 8 digits", details=[{"field": "extension"}]
            )
    expires_at: datetime | None = None
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidRequest(
                f"expiry must be 1 to {MAX_EXPIRY_DAYS} days", details=[{"field": "expires"}]
            )
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    agency_id = agency.id if agency is not None else None
    agency_code = agency.code if agency is not None else None
    if role is Role.AGENCY:
        if agency is None:
            raise InvalidRequest("an agency key needs its agency", details=[{"field": "agency"}])
    elif agency is not None:
        raise InvalidRequest(
            f"only agency keys are bound to an agency, not {role.value} keys",
            details=[{"field": "agency"}],
        )
    raw = generate_key()
    key = ApiKey(
        name=name,
        role=role.value,
        key_hash=hash_key(raw),
        prefix=raw[:12],
        agency_id=agency_id,
        operator_extension=operator_extension,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    after: dict[str, object] = {"name": name, "role": role.value}
    if agency_code is not None:
        after["agency"] = agency_code
    if operator_extension is not None:
        after["operator_extension"] = operator_extension
    if expires_at is not None:
        after["expires_at"] = expires_at.isoformat()
    await record_audit(
        session=session,
        actor=actor,
        action="apikey.create",
        entity_type="api_key",
        entity_id=str(key.id),
        before=None,
        after=after,
    )
    return CreatedKey(
        id=key.id,
        name=name,
        role=role,
        raw=raw,
        agency_code=agency_code,
        operator_extension=operator_extension,
        expires_at=expires_at,
    )


def _usable() -> ColumnElement[bool]:
    return and_(
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
    )


async def find_actor(*, session: AsyncSession, raw: str) -> Actor | None:
    """The actor of a usable key: neither revoked nor expired."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    row = (
        await session.execute(
            select(
                ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.agency_id, ApiKey.operator_extension
            ).where(ApiKey.key_hash == hash_key(raw), _usable())
        )
    ).one_or_none()
    if row is None:
        return None
    return Actor(
        name=row.name,
        role=Role(row.role),
        key_id=str(row.id),
        agency_id=row.agency_id,
        operator_extension=row.operator_extension,
    )


async def key_usable(*, session: AsyncSession, key_id: str) -> bool:
    """Whether the key is still neither revoked nor expired (open streams re-check it)."""
    found = await session.scalar(select(ApiKey.id).where(ApiKey.id == uuid.UUID(key_id), _usable()))
    return found is not None


async def revoke_key(*, session: AsyncSession, key_id: uuid.UUID, actor: Actor) -> None:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiKey.name)
    )
    if result.one_or_none() is None:
        raise NotFound(f"no active API key {key_id}")
    await record_audit(
        session=session,
        actor=actor,
        action="apikey.revoke",
        entity_type="api_key",
        entity_id=str(key_id),
        before={"revoked": False},
        after={"revoked": True},
    )


async def list_keys(*, session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())
