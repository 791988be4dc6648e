"""The `siaga112` command: serve, worker, database, API keys, the Asterisk sandbox, demo calls."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from siaga112.accounts import cli as accounts_cli
from siaga112.auth.roles import Role
from siaga112.config import Settings, load_settings
from siaga112.logs import configure


def _cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.db.manage import UnknownRevision, upgrade

    try:
        upgrade(settings.database_url_str, args.revision)
    except UnknownRevision as exc:
        print(f"siaga112 db upgrade: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"siaga112 db upgrade: PostgreSQL is not reachable ({exc})", file=sys.stderr)
        return 1
    print(f"database migrated to {args.revision}")
    return 0


async def _apikey_create(settings: Settings, role: Role, name: str, agency: str | None) -> str:
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
                agency_code=agency,
            )
            await session.commit()
            scope = f" agency={created.agency_code}" if created.agency_code else ""
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
                f"{k.name}" + (f"  (agency {codes.get(k.agency_id)})" if k.agency_id else "")
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
            out = asyncio.run(_apikey_create(settings, Role(args.role), args.name, args.agency))
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

    return run_service(settings, with_telephony=not args.api_only, spawn_worker=not args.no_worker)


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


def _cmd_pbx(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.telephony import pbx

    try:
        if args.pbx_cmd == "up":
            pbx.up(settings)
            print(pbx.status(settings).describe())
        elif args.pbx_cmd == "down":
            pbx.down(settings)
            print("asterisk stopped")
        elif args.pbx_cmd == "status":
            st = pbx.status(settings)
            print(st.describe())
            return 0 if st.running else 3
        elif args.pbx_cmd == "cli":
            print(pbx.cli(settings, " ".join(args.command)), end="")
    except pbx.PbxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.stack import run_stack

    return run_stack(settings)


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112.demo import demo_call

    return demo_call(settings, anonymous=args.anonymous, hold_s=args.hold)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siaga112", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the API, FastAGI server and AMI client")
    serve.add_argument("--api-only", action="store_true", help="no telephony (AGI/AMI)")
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

    key = sub.add_parser("apikey", help="API keys")
    key_sub = key.add_subparsers(dest="apikey_cmd", required=True)
    create = key_sub.add_parser("create", help="create a key; prints it once, on the last line")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument(
        "--agency", help="agency code (e.g. damkar); required for --role agency, else not allowed"
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

    pbx = sub.add_parser("pbx", help="the local Asterisk sandbox")
    pbx_sub = pbx.add_subparsers(dest="pbx_cmd", required=True)
    pbx_sub.add_parser("up", help="build (once) and start Asterisk with the rendered config")
    pbx_sub.add_parser("down", help="stop Asterisk")
    pbx_sub.add_parser("status", help="is it running")
    cli = pbx_sub.add_parser("cli", help='run an Asterisk CLI command, e.g. "pjsip show endpoints"')
    cli.add_argument("command", nargs="+")
    pbx.set_defaults(func=_cmd_pbx)

    stack = sub.add_parser(
        "stack", help="the local stack: Asterisk sandbox and siaga112 serve (Ctrl-C stops both)"
    )
    stack.set_defaults(func=_cmd_stack)

    demo = sub.add_parser("demo", help="demonstrations against the local stack")
    demo_sub = demo.add_subparsers(dest="demo_cmd", required=True)
    call = demo_sub.add_parser(
        "call", help="dial 112 through Asterisk with SIPp; show the incident"
    )
    call.add_argument("--anonymous", action="store_true", help="caller without caller ID")
    call.add_argument("--hold", type=float, default=4.0, help="seconds the caller stays on")
    demo.set_defaults(func=_cmd_demo)
    accounts_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    configure(settings.log_level)
    code: int = args.func(settings, args)
    return code
