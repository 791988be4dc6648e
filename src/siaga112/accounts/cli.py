"""`siaga112 user ...`: console accounts from the command line (the password is printed once)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="console accounts (people who sign in at /console)")
    user_sub = user.add_subparsers(dest="user_cmd", required=True)
    create = user_sub.add_parser(
        "create", help="create a console user; prints the generated password once, last line"
    )
    create.add_argument("--username", required=True)
    create.add_argument("--name", required=True, help="the name shown on screen")
    create.add_argument(
        "--role", required=True, choices=["operator", "supervisor", "agency", "admin"]
    )
    create.add_argument("--extension", help="an operator's SIP extension (its calls pop)")
    create.add_argument("--agency", help="agency staff: the agency's code")
    for verb in ("disable", "enable"):
        p = user_sub.add_parser(verb, help=f"{verb} a user (disable ends their sessions at once)")
        p.add_argument("username")
    user.set_defaults(func=run)


async def _run(settings: Settings, args: argparse.Namespace) -> str:
    from siaga112.accounts.service import create_user, set_disabled
    from siaga112.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            actor = system_actor("cli")
            if args.user_cmd == "create":
                created = await create_user(
                    session=session,
                    username=args.username,
                    display_name=args.name,
                    role=Role(args.role),
                    actor=actor,
                    agency_code=args.agency,
                    extension=args.extension,
                )
                await session.commit()
                return f"{created.id} {args.role} {created.username}\n{created.password}"
            await set_disabled(
                session=session,
                username=args.username,
                disabled=args.user_cmd == "disable",
                actor=actor,
            )
            await session.commit()
            return f"{args.user_cmd}d {args.username}"
    finally:
        await engine.dispose()


def run(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.errors import DomainError

    try:
        print(asyncio.run(_run(settings, args)))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0
