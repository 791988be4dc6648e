"""The sandbox's commands of `siaga112`: ``pbx up|down|status|cli``, ``stack``, ``demo call``,
``pgha up|status|kill|promote|rejoin|down``.
Added by `siaga112.cli` when this package is installed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from siaga112.config import Settings


def _cmd_pbx(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112_sandbox import pbx

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
    from siaga112_sandbox.stack import run_stack

    return run_stack(settings)


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112_sandbox.demo import demo_call

    return demo_call(settings, anonymous=args.anonymous, hold_s=args.hold)


def _cmd_pgha(settings: Settings, args: argparse.Namespace) -> int:
    from siaga112_sandbox import pgha

    pair = pgha.for_settings(settings, ports=(args.ports[0], args.ports[1]))
    try:
        if args.pgha_cmd == "up":
            pgha.up(pair)
            print(f"SIAGA112_DATABASE_URL={pair.url()}")
        elif args.pgha_cmd == "kill":
            pgha.kill(pair, args.node)
        elif args.pgha_cmd == "promote":
            print(f"promoted {pgha.promote(pair, args.node)}")
        elif args.pgha_cmd == "rejoin":
            pgha.rejoin(pair, args.node)
        elif args.pgha_cmd == "down":
            pgha.down(pair, wipe=args.wipe)
        nodes = pgha.status(pair)
        for node in nodes:
            print(node.describe())
        if args.pgha_cmd == "status":
            return 0 if any(n.running for n in nodes) else 3
    except pgha.PgHaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_commands(sub: Any, pbx_sub: Any) -> None:
    """Add the sandbox's commands to the `siaga112` parser (``sub``: its subcommands, ``pbx_sub``:
    those of ``siaga112 pbx``)."""
    for name, help_text in (
        ("up", "build (once) and start the sandbox's Asterisk with the rendered config"),
        ("down", "stop the sandbox's Asterisk"),
        ("status", "is it running"),
    ):
        pbx_sub.add_parser(name, help=help_text).set_defaults(func=_cmd_pbx)
    cli = pbx_sub.add_parser("cli", help='run an Asterisk CLI command, e.g. "pjsip show endpoints"')
    cli.add_argument("command", nargs="+")
    cli.set_defaults(func=_cmd_pbx)

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

    pgha = sub.add_parser(
        "pgha",
        help="a PostgreSQL primary and streaming replica on this machine (sandbox; "
        "failover by hand)",
    )
    pgha.add_argument(
        "--ports",
        type=int,
        nargs=2,
        default=[5441, 5442],
        metavar=("PG1", "PG2"),
        help="ports of pg1 (first primary) and pg2 (its replica) on 127.0.0.1",
    )
    pgha_sub = pgha.add_subparsers(dest="pgha_cmd", required=True)
    for name, help_text in (
        ("up", "create (once) and start both; prints the multi-host SIAGA112_DATABASE_URL"),
        ("status", "each cluster: running or stopped, primary or replica"),
    ):
        pgha_sub.add_parser(name, help=help_text)
    kill = pgha_sub.add_parser("kill", help="crash a cluster (immediate shutdown)")
    kill.add_argument("node", choices=["pg1", "pg2"])
    promote = pgha_sub.add_parser("promote", help="make the replica the primary (pg_ctl promote)")
    promote.add_argument("node", nargs="?", choices=["pg1", "pg2"])
    rejoin = pgha_sub.add_parser(
        "rejoin", help="rebuild a crashed old primary as the new primary's replica"
    )
    rejoin.add_argument("node", choices=["pg1", "pg2"])
    down = pgha_sub.add_parser("down", help="stop both")
    down.add_argument("--wipe", action="store_true", help="and remove their data")
    pgha.set_defaults(func=_cmd_pgha)
