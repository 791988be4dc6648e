"""Console accounts: creating users, signing in and out, and finding the user behind a session
cookie. Every sign-in, failed sign-in, lock-out and sign-out is written to audit_events."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.accounts.models import ConsoleSession, ConsoleUser
from siaga112.agencies.models import Agency
from siaga112.audit.service import record_audit
from siaga112.auth.roles import Role
from siaga112.auth.service import Actor
from siaga112.config import ConsoleSettings
from siaga112.errors import Conflict, InvalidRequest, NotFound

CONSOLE_ROLES = (Role.OPERATOR, Role.SUPERVISOR, Role.AGENCY, Role.ADMIN)
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
EXTENSION = re.compile(r"[1-9][0-9]{2,7}")
MAX_PASSWORD_CHARS = 256
# Sessions are touched (last_seen_at) at most this often: a busy console is not a write storm.
TOUCH_EVERY = timedelta(seconds=60)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_password(raw: str) -> str:
    return _hasher.hash(raw)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class SessionUser:
    """The person behind a valid session cookie."""

    session_id: str
    user_id: int
    username: str
    display_name: str
    role: Role
    agency_id: int | None
    agency_code: str | None
    extension: str | None
    csrf_token: str
    # When the session ends at the latest (its hard limit); None for one just signed in.
    expires_at: datetime | None = None

    @property
    def actor(self) -> Actor:
        # An operator acts as the operator of its linked phone, as an operator key does with its
        # extension (siaga112.auth.service.check_acts_for).
        return Actor(
            name=self.username,
            role=self.role,
            agency_id=self.agency_id,
            user_id=self.user_id,
            operator_extension=self.extension if self.role is Role.OPERATOR else None,
        )


@dataclass(frozen=True, slots=True)
class CreatedUser:
    id: int
    username: str
    password: str


async def create_user(
    *,
    session: AsyncSession,
    username: str,
    display_name: str,
    role: Role,
    actor: Actor,
    password: str | None = None,
    agency_code: str | None = None,
    extension: str | None = None,
) -> CreatedUser:
    """A new console user; the password is generated when none is given (returned once)."""
    username = username.strip().lower()
    if not USERNAME.fullmatch(username):
        raise InvalidRequest(
            "a username is 2-64 characters: a-z, 0-9, '.', '_', '-'",
            details=[{"field": "username"}],
        )
    if role not in CONSOLE_ROLES:
        raise InvalidRequest(
            f"role {role.value} has no console (use an API key)", details=[{"field": "role"}]
        )
    if not display_name.strip() or len(display_name) > 200:
        raise InvalidRequest("a name is 1-200 characters", details=[{"field": "name"}])
    agency_id: int | None = None
    if role is Role.AGENCY:
        if not agency_code:
            raise InvalidRequest("agency staff need their agency", details=[{"field": "agency"}])
        agency_id = await session.scalar(select(Agency.id).where(Agency.code == agency_code))
        if agency_id is None:
            raise NotFound(f"agency {agency_code!r} not found", details=[{"field": "agency"}])
    elif agency_code is not None:
        raise InvalidRequest("only agency staff belong to an agency", details=[{"field": "agency"}])
    if extension is not None:
        if role is not Role.OPERATOR:
            raise InvalidRequest(
                "only operators have a SIP extension", details=[{"field": "extension"}]
            )
        if not EXTENSION.fullmatch(extension):
            raise InvalidRequest("an extension is 3-8 digits", details=[{"field": "extension"}])
    taken = await session.scalar(
        select(func.count())
        .select_from(ConsoleUser)
        .where(
            (ConsoleUser.username == username)
            | ((ConsoleUser.operator_extension == extension) if extension else False)
        )
    )
    if taken:
        raise Conflict(
            f"a console user {username!r} or with extension {extension} exists",
            details=[{"field": "username"}],
        )
    raw = password if password is not None else generate_password()
    if not 8 <= len(raw) <= MAX_PASSWORD_CHARS:
        raise InvalidRequest("a password is 8-256 characters", details=[{"field": "password"}])
    user = ConsoleUser(
        username=username,
        display_name=display_name.strip(),
        password_hash=_hasher.hash(raw),
        role=role.value,
        agency_id=agency_id,
        operator_extension=extension,
    )
    session.add(user)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor,
        action="console_user.create",
        entity_type="console_user",
        entity_id=str(user.id),
        before=None,
        after={
            "username": username,
            "role": role.value,
            "agency": agency_code,
            "extension": extension,
        },
    )
    return CreatedUser(id=user.id, username=username, password=raw)


async def set_disabled(
    *, session: AsyncSession, username: str, disabled: bool, actor: Actor
) -> None:
    """Disabling ends the user's sessions at once (they are revoked, not left to expire)."""
    user = await session.scalar(select(ConsoleUser).where(ConsoleUser.username == username))
    if user is None:
        raise NotFound(f"no console user {username!r}")
    before = user.disabled
    user.disabled = disabled
    if disabled:
        await _revoke_all(session=session, user_id=user.id)
    await record_audit(
        session=session,
        actor=actor,
        action="console_user.disable" if disabled else "console_user.enable",
        entity_type="console_user",
        entity_id=str(user.id),
        before={"disabled": before},
        after={"disabled": disabled},
    )


async def _revoke_all(*, session: AsyncSession, user_id: int) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


@dataclass(frozen=True, slots=True)
class SignIn:
    """A new session: the raw token goes into the cookie and nowhere else."""

    token: str
    user: SessionUser
    expires_at: datetime


class SignInRefused(Exception):
    """Wrong username or password, a disabled account, or a locked one (`locked`)."""

    def __init__(self, *, locked: bool) -> None:
        super().__init__("sign-in refused")
        self.locked = locked


def _audit_actor(username: str) -> Actor:
    # Nobody is signed in: the console's sign-in form records it (the name tried is in `after`).
    return Actor(name="console-signin", role=Role.OPERATOR)


async def sign_in(
    *,
    session: AsyncSession,
    username: str,
    password: str,
    settings: ConsoleSettings,
    client: str | None,
    request_id: str | None,
) -> SignIn:
    """Checks the password and opens a new session (always a new id: no fixation). Raises
    SignInRefused; the caller commits in both cases (the failure is audited and counted)."""
    username = username.strip().lower()[:64]
    password = password[:MAX_PASSWORD_CHARS]
    now = await session.scalar(select(func.now()))
    assert now is not None
    user = await session.scalar(
        select(ConsoleUser).where(ConsoleUser.username == username).with_for_update()
    )
    audit_actor = (
        Actor(name=user.username, role=Role(user.role), user_id=user.id)
        if user is not None
        else _audit_actor(username)
    )
    ok = _verify(user.password_hash if user is not None else _DUMMY_HASH, password)
    if user is None:
        await record_audit(
            session=session,
            actor=audit_actor,
            action="console.signin_failed",
            entity_type="console_user",
            entity_id="unknown",
            before=None,
            after={"username": username, "reason": "unknown_user", "client": client},
            request_id=request_id,
        )
        raise SignInRefused(locked=False)
    locked = user.locked_until is not None and user.locked_until > now
    if not ok or user.disabled or locked:
        reason = "disabled" if user.disabled else "locked" if locked else "wrong_password"
        if not ok and not locked:
            user.failed_attempts += 1
            if user.failed_attempts >= settings.lockout_after:
                user.locked_until = now + timedelta(minutes=settings.lockout_min)
                user.failed_attempts = 0
                locked = True
                reason = "locked_now"
        await record_audit(
            session=session,
            actor=audit_actor,
            action="console.signin_failed",
            entity_type="console_user",
            entity_id=str(user.id),
            before=None,
            after={"username": username, "reason": reason, "client": client},
            request_id=request_id,
        )
        raise SignInRefused(locked=locked)
    user.failed_attempts = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=settings.session_max_h)
    row = ConsoleSession(
        user_id=user.id,
        token_hash=hash_token(token),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=expires,
    )
    session.add(row)
    await session.flush()
    await record_audit(
        session=session,
        actor=audit_actor,
        action="console.signin",
        entity_type="console_session",
        entity_id=str(row.id),
        before=None,
        after={"username": username, "role": user.role, "client": client},
        request_id=request_id,
    )
    agency_code = (
        await session.scalar(select(Agency.code).where(Agency.id == user.agency_id))
        if user.agency_id is not None
        else None
    )
    return SignIn(
        token=token,
        expires_at=expires,
        user=SessionUser(
            session_id=str(row.id),
            user_id=user.id,
            username=user.username,
            display_name=user.display_name,
            role=Role(user.role),
            agency_id=user.agency_id,
            agency_code=agency_code,
            extension=user.operator_extension,
            csrf_token=row.csrf_token,
        ),
    )


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def find_session(
    *, session: AsyncSession, token: str, settings: ConsoleSettings
) -> SessionUser | None:
    """The user of a live session: not revoked, not expired, not idle too long, the account
    enabled. Anything else is no session at all."""
    if not token or len(token) > 100:
        return None
    idle = timedelta(minutes=settings.session_idle_min)
    row = (
        await session.execute(
            select(ConsoleSession, ConsoleUser, Agency.code, func.now())
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .outerjoin(Agency, Agency.id == ConsoleUser.agency_id)
            .where(
                ConsoleSession.token_hash == hash_token(token),
                ConsoleSession.revoked_at.is_(None),
                ConsoleSession.expires_at > func.now(),
                ConsoleSession.last_seen_at > func.now() - idle,
                ConsoleUser.disabled.is_(False),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    sess, user, agency_code, now = row
    if now - sess.last_seen_at > TOUCH_EVERY:
        await session.execute(
            update(ConsoleSession).where(ConsoleSession.id == sess.id).values(last_seen_at=now)
        )
        await session.commit()
    return SessionUser(
        session_id=str(sess.id),
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        agency_id=user.agency_id,
        agency_code=agency_code,
        extension=user.operator_extension,
        csrf_token=sess.csrf_token,
        expires_at=sess.expires_at,
    )


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def sign_out(*, session: AsyncSession, user: SessionUser, request_id: str | None) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == uuid.UUID(user.session_id), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    await record_audit(
        session=session,
        actor=user.actor,
        action="console.signout",
        entity_type="console_session",
        entity_id=user.session_id,
        before=None,
        after={"username": user.username},
        request_id=request_id,
    )
