"""Creating, finding and revoking API keys. Keys are random; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.agencies.models import Agency
from siaga112.audit.service import record_audit
from siaga112.auth.models import ApiKey
from siaga112.auth.roles import ROLE_PERMISSIONS, Permission, Role
from siaga112.errors import InvalidRequest, NotFound

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
    # A console user (siaga112.accounts): `name` is the username.
    user_id: int | None = None

    @property
    def label(self) -> str:
        if self.user_id is not None:
            return f"user:{self.name}"
        return f"key:{self.name}" if self.key_id else f"system:{self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def system_actor(name: str) -> Actor:
    return Actor(name=name, role=Role.ADMIN)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: uuid.UUID
    name: str
    role: Role
    raw: str
    agency_code: str | None = None


async def create_key(
    *,
    session: AsyncSession,
    name: str,
    role: Role,
    actor: Actor,
    agency_code: str | None = None,
) -> CreatedKey:
    """A new key; `agency_code` is required for (and only for) the agency role."""
    agency_id: int | None = None
    if role is Role.AGENCY:
        if not agency_code:
            raise InvalidRequest("an agency key needs its agency", details=[{"field": "agency"}])
        agency_id = await session.scalar(select(Agency.id).where(Agency.code == agency_code))
        if agency_id is None:
            raise NotFound(f"agency {agency_code!r} not found", details=[{"field": "agency"}])
    elif agency_code is not None:
        raise InvalidRequest(
            f"only agency keys are bound to an agency, not {role.value} keys",
            details=[{"field": "agency"}],
        )
    raw = generate_key()
    key = ApiKey(
        name=name, role=role.value, key_hash=hash_key(raw), prefix=raw[:12], agency_id=agency_id
    )
    session.add(key)
    await session.flush()
    after: dict[str, object] = {"name": name, "role": role.value}
    if agency_code is not None:
        after["agency"] = agency_code
    await record_audit(
        session=session,
        actor=actor,
        action="apikey.create",
        entity_type="api_key",
        entity_id=str(key.id),
        before=None,
        after=after,
    )
    return CreatedKey(id=key.id, name=name, role=role, raw=raw, agency_code=agency_code)


async def find_actor(*, session: AsyncSession, raw: str) -> Actor | None:
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.agency_id).where(
                ApiKey.key_hash == hash_key(raw), ApiKey.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return Actor(name=row.name, role=Role(row.role), key_id=str(row.id), agency_id=row.agency_id)


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
