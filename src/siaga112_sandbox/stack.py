"""`siaga112 stack` (what `make run` runs): the Asterisk sandbox with the rendered 112-centre
configuration, and `siaga112 serve` with telephony, until Ctrl-C stops both."""

from __future__ import annotations

import sys

from siaga112.accounts.demo import ensure_demo_accounts
from siaga112.config import Settings
from siaga112.db.manage import UnknownRevision, upgrade
from siaga112.service import run_service
from siaga112_sandbox import pbx


def run_stack(settings: Settings) -> int:
    try:
        upgrade(settings.database_url_str)
    except UnknownRevision as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: PostgreSQL is not reachable ({exc}); make run starts it", file=sys.stderr)
        return 2
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
