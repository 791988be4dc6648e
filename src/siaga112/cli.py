"""The `siaga112` command: serve, worker, database, API keys, cell towers, Asterisk's configuration
(and, where the development sandbox is installed, the sandbox, the local stack, demo calls)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import sys
import uuid
from collections.abc import Sequence

from siaga112.accounts import cli as accounts_cli
from siaga112.auth.roles import Role
from siaga112.config import Settings, load_settings
from siaga112.logs import configure


def _cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from siaga112.db.manage import MissingRoles, UnknownRevision, upgrade
    from siaga112.db.roles import roles_from

    try:
        upgrade(settings.database_owner_url_str, args.revision, roles=roles_from(settings))
    except (UnknownRevision, MissingRoles) as exc:
        print(f"siaga112 db upgrade: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"siaga112 db upgrade: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"siaga112 db upgrade: PostgreSQL is not reachable ({exc})", file=sys.stderr)
        return 1
    print(f"database migrated to {args.revision}")
    return 0


def _cmd_db_roles(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from siaga112.db.roles import ensure_roles, roles_from

    roles = roles_from(settings)
    if settings.database_admin_url is None or roles is None:
        print(
            "siaga112 db roles: set SIAGA112_DATABASE_ADMIN_URL (a superuser), "
            "SIAGA112_DATABASE_OWNER_URL (the schema owner) and SIAGA112_DATABASE_URL (the "
            "service, another role); SIAGA112_PBX__DB_USER names Asterisk's role "
            "(docs/operations.md)",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(ensure_roles(settings.database_admin_url.get_secret_value(), roles))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"siaga112 db roles: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    names = [roles.owner.name, roles.service.name] + (
        [roles.asterisk.name] if roles.asterisk else []
    )
    print(f"database {roles.database}: roles {', '.join(names)} in place")
    return 0


async def _apikey_create(
    settings: Settings,
    role: Role,
    name: str,
    agency: str | None,
    extension: str | None = None,
    expires_in_days: int | None = None,
) -> str:
    from siaga112.agencies.service import agency_ref
    from siaga112.auth.service import create_key, system_actor
    from siaga112.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            created = await create_key(
                session=session,
                name=name,
                role=role,
                actor=system_actor("cli"),
                agency=await agency_ref(session=session, code=agency) if agency else None,
                operator_extension=extension,
                expires_in_days=expires_in_days,
            )
            await session.commit()
            scope = f" agency={created.agency_code}" if created.agency_code else ""
            if created.operator_extension:
                scope += f" operator={created.operator_extension}"
            if created.expires_at:
                scope += f" expires={created.expires_at.isoformat(timespec='seconds')}"
            return f"{created.id} {created.role.value}{scope} {created.name}\n{created.raw}"
    finally:
        await engine.dispose()


async def _apikey_list(settings: Settings) -> list[str]:
    from sqlalchemy import select

    from siaga112.agencies.models import Agency
    from siaga112.auth.service import list_keys
    from siaga112.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            keys = await list_keys(session=session)
            codes = {i: c for i, c in (await session.execute(select(Agency.id, Agency.code)))}
            return [
                f"{k.id}  {k.role:<10} {k.prefix}…  {'revoked' if k.revoked_at else 'active':8} "
                f"{k.name}"
                + (f"  (agency {codes.get(k.agency_id)})" if k.agency_id else "")
                + (f"  (operator {k.operator_extension})" if k.operator_extension else "")
                + (f"  (expires {k.expires_at:%Y-%m-%d %H:%M})" if k.expires_at else "")
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
    from siaga112.errors import DomainError, NotFound

    if args.apikey_cmd == "create":
        try:
            out = asyncio.run(
                _apikey_create(
                    settings,
                    Role(args.role),
                    args.name,
                    args.agency,
                    args.extension,
                    args.expires_in_days,
                )
            )
        except DomainError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
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


async def _cells_import(settings: Settings, path: str, batch_rows: int) -> int:
    from pathlib import Path

    from siaga112.db.manage import connect
    from siaga112.locations.cells import ImportProgress, import_cells

    def show(progress: ImportProgress) -> None:
        print(progress.describe(), file=sys.stderr, flush=True)

    conn = await connect(settings.database_url_str)
    try:
        report = await import_cells(conn, Path(path), batch_rows=batch_rows, on_progress=show)
    finally:
        await conn.close()
    for example in report.bad_examples:
        print(f"bad row: {example}", file=sys.stderr)
    print(
        f"imported {report.rows_read:,} rows in {report.elapsed_s:.1f} s "
        f"({report.rows_per_s:,.0f} rows/s): {report.inserted:,} new, {report.updated:,} "
        f"updated, {report.unchanged:,} unchanged, {report.bad_rows:,} bad"
    )
    return 0


def _cmd_cells(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_cells_import(settings, args.file, args.batch_rows))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.service import run_service

    if args.call_control and not args.api_only:
        print("siaga112 serve: --call-control goes with --api-only", file=sys.stderr)
        return 2
    return run_service(
        settings,
        with_telephony=not args.api_only,
        spawn_worker=not args.no_worker,
        call_control=args.call_control,
    )


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.worker import parse_duties, run_worker

    try:
        duties = parse_duties(args.duties)
    except ValueError as exc:
        print(f"siaga112 worker: {exc}", file=sys.stderr)
        return 2
    return run_worker(
        settings,
        with_telephony=not args.no_telephony,
        duties=duties,
        metrics_port=args.metrics_port,
        nice=args.nice,
    )


def _cmd_pbx_render(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from siaga112.pbxconf.prompts import PromptError, write_sounds
    from siaga112.pbxconf.render import PbxError, write_config

    if not args.to and not args.sounds_to:
        print("error: give --to DIR, --sounds-to DIR or both", file=sys.stderr)
        return 2
    names = [n.name for n in settings.pbx_nodes]
    if args.node is None and len(names) > 1:
        print(f"error: give --node, one of {', '.join(names)}", file=sys.stderr)
        return 2
    if args.node is not None and args.node not in names:
        print(f"error: no node {args.node!r} (nodes: {', '.join(names)})", file=sys.stderr)
        return 2
    node = settings.pbx_node(args.node) if args.node is not None else None
    try:
        written = write_config(settings, Path(args.to), node=node) if args.to else []
        if args.sounds_to:
            written += write_sounds(Path(args.sounds_to), prompts_dir=settings.pbx.prompts_dir)
    except (PbxError, PromptError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siaga112", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the API, FastAGI server and AMI client")
    serve.add_argument("--api-only", action="store_true", help="no telephony (AGI/AMI)")
    serve.add_argument(
        "--call-control",
        action="store_true",
        help="with --api-only: an AMI link for actions only (hang-up, transfer, callbacks, "
        "queue sessions), no AGI server and no AMI events: the consoles' own instance",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start a `siaga112 worker` (locations, recordings): one runs elsewhere",
    )
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="background work off the AGI loop: AMI events, CDR reconciliation, callers' "
        "locations, call recordings",
    )
    worker.add_argument(
        "--no-telephony", action="store_true", help="no AMI (as with serve --api-only)"
    )
    worker.add_argument(
        "--duties",
        default="events,locations,recordings",
        help="what this process does, comma-separated (default: all of events, locations, "
        "recordings)",
    )
    worker.add_argument(
        "--metrics-port", type=int, default=None, help="instead of SIAGA112_WORKER__PORT; 0: none"
    )
    worker.add_argument(
        "--nice",
        type=int,
        default=0,
        choices=range(20),
        metavar="0..19",
        help="run at a lower CPU priority (serve starts its workers at 5 and 10)",
    )
    worker.set_defaults(func=_cmd_worker)

    db = sub.add_parser("db", help="database")
    db_sub = db.add_subparsers(dest="db_cmd", required=True)
    up = db_sub.add_parser("upgrade", help="create the database if missing and migrate it")
    up.add_argument("revision", nargs="?", default="heads")
    up.set_defaults(func=_cmd_db_upgrade)
    roles = db_sub.add_parser(
        "roles",
        help="create or update the schema owner's, the service's and Asterisk's roles and the "
        "database (idempotent; needs SIAGA112_DATABASE_ADMIN_URL)",
    )
    roles.set_defaults(func=_cmd_db_roles)

    key = sub.add_parser("apikey", help="API keys")
    key_sub = key.add_subparsers(dest="apikey_cmd", required=True)
    create = key_sub.add_parser("create", help="create a key; prints it once, on the last line")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument(
        "--agency", help="agency code (e.g. damkar); required for --role agency, else not allowed"
    )
    create.add_argument(
        "--extension",
        help="the operator (SIP extension, e.g. 6001) an operator key acts as: its own queue "
        "session and callback phone; without it the key cannot act on either",
    )
    create.add_argument(
        "--expires-in-days", type=int, help="the key is refused after this many days (1-3650)"
    )
    key_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    key.set_defaults(func=_cmd_apikey)

    cells = sub.add_parser("cells", help="cell-tower table that places network-cell locations")
    cells_sub = cells.add_subparsers(dest="cells_cmd", required=True)
    cells_import = cells_sub.add_parser(
        "import",
        help="import or update from an OpenCelliD CSV (plain or .gz); bad rows are counted",
    )
    cells_import.add_argument("file")
    cells_import.add_argument("--batch-rows", type=int, default=100_000, help=argparse.SUPPRESS)
    cells.set_defaults(func=_cmd_cells)

    pbx = sub.add_parser("pbx", help="Asterisk: its configuration (and the local sandbox)")
    pbx_sub = pbx.add_subparsers(dest="pbx_cmd", required=True)
    render = pbx_sub.add_parser(
        "render",
        help="write the 112 centre's Asterisk configuration (/etc/asterisk) and its prompts",
    )
    render.add_argument("--to", metavar="DIR", help="the configuration files (/etc/asterisk)")
    render.add_argument(
        "--node",
        metavar="NAME",
        help="the node of `pbx.nodes` to render for (its systemname, SIP and AMI addresses); "
        "required when several are configured",
    )
    render.add_argument(
        "--sounds-to",
        metavar="DIR",
        help="the prompts callers hear (/usr/share/asterisk/sounds/id/siaga112); needs "
        "espeak-ng and sox",
    )
    render.set_defaults(func=_cmd_pbx_render)

    # The development sandbox's commands (pbx up|down|status|cli, stack, demo), where it is
    # installed: a production install has no siaga112_sandbox.
    if importlib.util.find_spec("siaga112_sandbox") is not None:
        importlib.import_module("siaga112_sandbox.cli").add_commands(sub, pbx_sub)

    accounts_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    configure(settings.log_level)
    code: int = args.func(settings, args)
    return code
