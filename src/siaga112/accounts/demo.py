"""The local stack's demo console accounts: one per demo operator extension (linked to it) and
one supervisor. Passwords are generated once per machine and kept in the state directory
(mode 0600, never in the repository); the accounts are created when missing and given those
passwords again on every `make run`, so that what the stack prints always signs in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select

from siaga112.accounts.models import ConsoleUser
from siaga112.accounts.service import create_user, hash_password
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.config import Settings, stored_passwords

SUPERVISOR = "supervisor"


@dataclass(frozen=True, slots=True)
class DemoAccount:
    username: str
    role: Role
    extension: str | None
    password: str


def _passwords(settings: Settings, usernames: list[str]) -> dict[str, str]:
    return stored_passwords(settings.state_dir / "console-demo.json", usernames, nbytes=12)


async def _ensure(settings: Settings) -> list[DemoAccount]:
    from siaga112.db.session import make_engine, make_sessionmaker

    wanted: list[tuple[str, Role, str | None]] = [
        (f"operator{ext}", Role.OPERATOR, ext) for ext in settings.pbx.demo_operators[:2]
    ]
    wanted.append((SUPERVISOR, Role.SUPERVISOR, None))
    passwords = _passwords(settings, [w[0] for w in wanted])
    engine = make_engine(settings)
    out: list[DemoAccount] = []
    try:
        async with make_sessionmaker(engine)() as session:
            for username, role, ext in wanted:
                user = await session.scalar(
                    select(ConsoleUser).where(ConsoleUser.username == username)
                )
                if user is None:
                    await create_user(
                        session=session,
                        username=username,
                        display_name=f"Demo {role.value} {ext or ''}".strip(),
                        role=role,
                        actor=system_actor("stack"),
                        password=passwords[username],
                        extension=ext,
                    )
                elif not user.disabled:
                    user.password_hash = hash_password(passwords[username])
                    user.failed_attempts = 0
                    user.locked_until = None
                out.append(DemoAccount(username, role, ext, passwords[username]))
            await session.commit()
    finally:
        await engine.dispose()
    return out


def ensure_demo_accounts(settings: Settings) -> list[DemoAccount]:
    return asyncio.run(_ensure(settings))
