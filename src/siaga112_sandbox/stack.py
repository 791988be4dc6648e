"""`siaga112 stack` (what `make run` runs): the Asterisk sandbox with the rendered 112-centre
configuration, and `siaga112 serve` with telephony, until Ctrl-C stops both."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from siaga112.accounts.demo import ensure_demo_accounts
from siaga112.config import Settings
from siaga112.db.manage import MissingRoles, UnknownRevision, upgrade
from siaga112.db.roles import ensure_roles, roles_from, with_local_roles
from siaga112.service import run_service
from siaga112_sandbox import pbx


def run_stack(settings: Settings) -> int:
    # The service runs as a role that can only read and write rows, Asterisk as one that can
    # only read the PJSIP tables, the schema belongs to a third (siaga112.db.roles): configured
    # ones, else roles of this database's own made with the superuser of this machine.
    roles = roles_from(settings)
    admin = settings.database_admin_url
    try:
        if roles is None:
            settings, roles, admin_url = with_local_roles(settings)
            asyncio.run(ensure_roles(admin_url, roles))
        elif admin is not None:
            asyncio.run(ensure_roles(admin.get_secret_value(), roles))
        upgrade(settings.database_owner_url_str, roles=roles)
    except (UnknownRevision, MissingRoles) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except asyncpg.PostgresError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: PostgreSQL is not reachable ({exc}); make run starts it", file=sys.stderr)
        return 2
    # `siaga112 serve` starts its workers with its own environment.
    os.environ["SIAGA112_DATABASE_URL"] = settings.database_url_str
    try:
        status = pbx.up(settings)
    except pbx.PbxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    creds = pbx.operator_credentials(settings)
    console = ensure_demo_accounts(settings)
    api = f"http://{settings.api.host}:{settings.api.port}"
    lines = [
        status.describe(),
        "",
        f"112 centre running. SIP: {settings.pbx.sip_bind}:{settings.pbx.sip_port} (UDP); "
        f"carrier trunk from {', '.join(settings.pbx.carrier_addresses)}.",
        "Demo operator phones (register a softphone, see sip-conf/README.md):",
        *(f"  extension {ext}  password {pw}" for ext, pw in sorted(creds.items())),
        f"Console: {api}/console  sign in as",
        *(
            f"  {a.role.value:<10}  username {a.username}  password {a.password}"
            + (f"  (phone {a.extension})" if a.extension else "")
            for a in console
        ),
        "",
        "Place a test call (in another terminal):  .venv/bin/siaga112 demo call",
        "  anonymous caller / locked handset:      .venv/bin/siaga112 demo call --anonymous",
        f"API: {api}/docs   key: .venv/bin/siaga112 apikey create --role supervisor --name you",
        "Ctrl-C stops siaga112 and Asterisk.",
    ]
    print("\n".join(lines), flush=True)
    try:
        return run_service(settings, with_telephony=True)
    finally:
        pbx.down(settings)
        print("stopped Asterisk", file=sys.stderr)
