"""The `siaga112` command: serve, database, API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from siaga112.auth.roles import Role
from siaga112.config import Settings, load_settings
from siaga112.logs import configure


def _cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.db.manage import upgrade

    upgrade(settings.database_url_str, args.revision)
    print(f"database migrated to {args.revision}")
    return 0


async def _apikey_create(settings: Settings, role: Role, name: str) -> str:
    from siaga112.auth.service import create_key, system_actor
    from siaga112.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            created = await create_key(
                session=session, name=name, role=role, actor=system_actor("cli")
            )
            await session.commit()
            return f"{created.id} {created.role.value} {created.name}\n{created.raw}"
    finally:
        await engine.dispose()


async def _apikey_list(settings: Settings) -> list[str]:
    from siaga112.auth.service import list_keys
    from siaga112.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            keys = await list_keys(session=session)
            return [
                f"{k.id}  {k.role:<10} {k.prefix}…  {'revoked' if k.revoked_at else 'active':8} "
                f"{k.name}"
                for k in keys
            ]
    finally:
        await engine.dispose()


async def _apikey_revoke(settings: Settings, key_id: uuid.UUID) -> None:
    from siaga112.auth.service import revoke_key, system_actor
    from siaga112.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            await revoke_key(session=session, key_id=key_id, actor=system_actor("cli"))
            await session.commit()
    finally:
        await engine.dispose()


def _cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.errors import NotFound

    if args.apikey_cmd == "create":
        out = asyncio.run(_apikey_create(settings, Role(args.role), args.name))
        info, raw = out.split("\n")
        print(f"created API key {info}", file=sys.stderr)
        print("store it now: it is shown only once", file=sys.stderr)
        print(raw)
        return 0
    if args.apikey_cmd == "list":
        for line in asyncio.run(_apikey_list(settings)):
            print(line)
        return 0
    try:
        asyncio.run(_apikey_revoke(settings, uuid.UUID(args.key_id)))
    except (ValueError, NotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.service import run_service

    return run_service(settings, with_telephony=not args.api_only)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siaga112", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the API, FastAGI server and AMI client")
    serve.add_argument("--api-only", action="store_true", help="no telephony (AGI/AMI)")
    serve.set_defaults(func=_cmd_serve)

    db = sub.add_parser("db", help="database")
    db_sub = db.add_subparsers(dest="db_cmd", required=True)
    up = db_sub.add_parser("upgrade", help="create the database if missing and migrate it")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_cmd_db_upgrade)

    key = sub.add_parser("apikey", help="API keys")
    key_sub = key.add_subparsers(dest="apikey_cmd", required=True)
    create = key_sub.add_parser("create", help="create a key; prints it once, on the last line")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    key_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    key.set_defaults(func=_cmd_apikey)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    configure(settings.log_level)
    code: int = args.func(settings, args)
    return code
