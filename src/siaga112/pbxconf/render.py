"""Asterisk's configuration for a 112 centre, rendered from the settings: the dialplan (answer
first, CDR variables, the AGI step within its budget, the queues), PJSIP, the manager account
with its event filter, queues, CDR columns, realtime operators.

Templates are in ``templates/`` beside this module (placeholders ``@@{name}``; ``${...}`` stays
Asterisk's). Used for the development sandbox and for a real PBX host alike:
``siaga112 pbx render --to DIR`` writes the files for ``/etc/asterisk``. What the rendered files
and siaga112's adapters agree on is `siaga112.telephony.contract`.
"""

from __future__ import annotations

import os
import socket
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from siaga112.config import LOW_QUEUE_SUFFIX, PbxNode, PbxSettings, Settings, stored_passwords
from siaga112.db.url import parse as parse_database_url
from siaga112.pbxconf.prompts import FLAGGED_NOTICE, LANGUAGE, SOUNDS_SUBDIR, prompt
from siaga112.telephony.ami_call_control import RELOAD_CONTEXT
from siaga112.telephony.ami_events import OVERFLOW_CONTEXT, OVERFLOW_MEMBER_PREFIX
from siaga112.telephony.contract import (
    AMI_EVENTS,
    AMI_QUEUE_EVENTS,
    AMI_SCOPED_EVENTS,
    CDR_CSV_FIELDS,
    RECORDING_NAME,
)

__all__ = [
    "AMI_DISABLED_EVENTS",
    "ASTERISK_DATA_DIR",
    "BENCH_AGI_NUMBER",
    "BENCH_ANSWER_CONTEXT",
    "BENCH_PLAIN_NUMBER",
    "BENCH_QUEUE",
    "CONFIG_FILES",
    "LOW_QUEUE_SUFFIX",
    "OVERFLOW_PENALTY",
    "OVERFLOW_RULE",
    "REMOVED_FILES",
    "SECRET_FILES",
    "STANDARD_DIRECTORIES",
    "STASIS_DECLINED_TYPES",
    "PbxError",
    "node_directories",
    "operator_credentials",
    "prompt_sounds_dir",
    "render_config",
    "templates_dir",
    "write_config",
]


class PbxError(Exception):
    """The PBX's configuration could not be rendered or written, or the sandbox could not be
    built, started, stopped or reached; the message says why."""


# Benchmark numbers (``PbxSettings.bench_numbers``, bench/surge.py): BENCH_AGI_NUMBER runs the
# emergency path exactly (Answer, AGI step, Queue); BENCH_PLAIN_NUMBER runs the same path with
# AGI() replaced by NoOp() (same arguments, nothing sent). Both queue into BENCH_QUEUE, whose
# BENCH_MEMBERS members are answered inside Asterisk: ``Local/bench-op-NN@BENCH_ANSWER_CONTEXT/n``,
# a context that answers at once and waits for the caller to hang up. A SIPp phone as the
# answering side was the bench's ceiling (it fell behind before Asterisk did, issue 13), so
# the bench measured SIPp; Local members cost only Asterisk, the thing measured, and the same on
# both paths. The queue rings them even while in use (ringinuse), and there are many so that
# callers do not wait for each other: app_queue lets only as many callers ring at once as
# members are available (with ringall: one, the head), and the others look again only once a
# second. The member's name (bench-op-NN) is what siaga112 records as the answering operator.
BENCH_AGI_NUMBER = "1129"
BENCH_PLAIN_NUMBER = "1128"
BENCH_QUEUE = "siaga112-bench"
BENCH_MEMBERS = 32
BENCH_ANSWER_CONTEXT = "siaga112-bench-answer"

# Not duration(double)/billsec(double): with those, Asterisk 22.10's cdr_custom writes nothing
# at all (checked); the double start/answer/end carry the precision anyway.
_CDR_FIELD_SPECS: dict[str, str] = {
    "start": "start(double)",
    "answer": "answer(double)",
    "end": "end(double)",
}

# Modules a 112 centre does not use, or that are slow to start / look things up on the network.
NOLOAD_MODULES: tuple[str, ...] = (
    # channel drivers other than PJSIP
    "chan_iax2", "chan_console", "chan_motif", "chan_unistim", "chan_websocket",
    "chan_audiosocket", "chan_alsa", "chan_oss", "chan_mobile",
    # CDR/CEL back ends other than cdr_custom
    "cdr_adaptive_odbc", "cdr_csv", "cdr_manager", "cdr_odbc", "cdr_pgsql", "cdr_radius",
    "cdr_sqlite3_custom", "cdr_tds", "cel_custom", "cel_manager", "cel_odbc", "cel_pgsql",
    "cel_radius", "cel_sqlite3_custom", "cel_tds",
    # network look-ups, monitoring, external services
    "res_stun_monitor", "res_resolver_unbound", "res_hep", "res_hep_pjsip", "res_hep_rtcp",
    "res_snmp", "res_statsd", "res_prometheus", "res_xmpp", "res_calendar",
    "res_calendar_caldav", "res_calendar_ews", "res_calendar_exchange", "res_calendar_icalendar",
    "res_stir_shaken", "res_pjsip_stir_shaken", "res_curl", "func_curl", "res_config_curl",
    "res_http_media_cache", "res_aeap", "res_speech_aeap",
    # realtime/database configuration (res_config_pgsql stays: operators' PJSIP realtime)
    "res_config_ldap", "res_config_odbc", "res_config_sqlite3", "res_odbc",
    "res_odbc_transaction", "func_odbc", "pbx_realtime",
    # other dialplan languages (Debian ships sample extensions.ael / extensions.lua)
    "pbx_ael", "res_ael_share", "pbx_lua", "pbx_dundi",
    # voicemail, fax, ADSI, misc applications
    "app_voicemail", "app_voicemail_odbc", "app_minivm", "res_smdi", "res_adsi", "app_adsiprog",
    "app_getcpeid", "res_fax", "res_fax_spandsp", "app_sms", "app_festival", "app_jack", "app_mp3",
    "app_alarmreceiver", "res_phoneprov", "res_pjsip_phoneprov_provider",
    "res_audiosocket", "app_audiosocket",
    # websockets / ARI (http.conf is disabled anyway)
    "res_http_websocket", "res_pjsip_transport_websocket", "res_websocket_client",
    "res_ari", "res_ari_applications", "res_ari_asterisk", "res_ari_bridges", "res_ari_channels",
    "res_ari_device_states", "res_ari_endpoints", "res_ari_events", "res_ari_model",
    "res_ari_playbacks", "res_ari_recordings", "res_ari_sounds", "app_stasis",
    "res_stasis_answer", "res_stasis_broadcast", "app_stasis_broadcast", "res_stasis_device_state",
    "res_stasis_playback", "res_stasis_recording", "res_stasis_snoop", "res_stasis_test",
    # running programs on the PBX host from the dialplan (System(), SHELL()): with them a leaked
    # AMI secret (Originate) would be command execution on the host
    "app_system", "func_shell",
    # music on hold: the root has no MOH sounds (asterisk-moh-opsound is not installed), so
    # loaded it logs an ERROR for the missing directory at every start and disables itself
    "res_musiconhold",
)  # fmt: skip

# Under a surge every channel message goes through one thread in Asterisk, the manager's
# ("stasis/m:manager:core"): at 50 calls/s its queue passed 3000 waiting messages (bench/README).
# Two ways to give it less to do, both read at Asterisk's start:
# - stasis.conf: message types never created at all. Only types nothing here consumes but AMI
#   (checked in Asterisk 22's sources: their only subscribers are AMI, ARI -- not loaded -- and
#   res_hep_rtcp -- not loaded): VarSet (one per variable set, dozens per call), RTCP reports,
#   AGI command start/end. Never a type a module routes by name (stasis_message_router_add):
#   Asterisk then fails to start (ast_channel_hangup_handler_type stops the manager loading).
STASIS_DECLINED_TYPES: tuple[str, ...] = (
    "ast_channel_varset_type",
    "ast_rtp_rtcp_sent_type",
    "ast_rtp_rtcp_received_type",
    "agi_exec_start_type",
    "agi_exec_end_type",
)
# - manager.conf disabledevents: events Asterisk still creates (their messages are consumed by
#   CDR, queues, ...) but never formats for AMI. None of them is in AMI_EVENTS (a unit test
#   checks): the eventfilter would drop them anyway.
AMI_DISABLED_EVENTS: tuple[str, ...] = (
    "Newexten",
    "NewCallerid",
    "NewConnectedLine",
    "NewAccountCode",
    "DialBegin",
    "DialState",
    "HangupRequest",
    "SoftHangupRequest",
    "BridgeCreate",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeDestroy",
    "DeviceStateChange",
    "MusicOnHoldStart",
    "MusicOnHoldStop",
)

# Overflow (README "Overflow"): each overflow target is a member of both emergency queues,
# ``Local/<target>@siaga112-overflow/n``, with this penalty; operators have 0 (a site may tier
# them 0..9). With ringall, app_queue rings the lowest penalty among the members it can ring, so
# an overflow target rings at once when no operator can be rung (none logged in, all paused,
# busy or unregistered). Once a caller has waited overflow_after_s, the queue rule raises every
# lower penalty to this one (QUEUE_RAISE_PENALTY) for that caller: operators and overflow
# targets then ring together. The caller never leaves the queue, so its position is kept and an
# unanswered overflow ring changes nothing; all of it runs in Asterisk, siaga112 up or down.
OVERFLOW_PENALTY = 10
OVERFLOW_RULE = "siaga112-overflow"


# Asterisk's astdatadir (asterisk.conf): its sounds/<language>/ holds the prompts.
ASTERISK_DATA_DIR = "/usr/share/asterisk"


def prompt_sounds_dir(root: Path = Path("/")) -> Path:
    """Where Asterisk finds siaga112's prompts, under a root filesystem (the sandbox's, or
    ``/`` on a PBX host): ``<astdatadir>/sounds/id/siaga112``."""
    return root / ASTERISK_DATA_DIR.lstrip("/") / "sounds" / LANGUAGE / SOUNDS_SUBDIR


class _Template(string.Template):
    # ``${...}`` belongs to Asterisk; our placeholders are ``@@{name}``.
    delimiter = "@@"


def templates_dir(settings: Settings) -> Path:
    """The directory holding the Asterisk templates (``pbx.templates_dir``, else the ones shipped
    in this package)."""
    if settings.pbx.templates_dir is not None:
        return settings.pbx.templates_dir
    return Path(__file__).resolve().parent / "templates"


def _credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "operators.json"


def operator_credentials(settings: Settings) -> dict[str, str]:
    """Passwords of the demo operators (extension -> password), generated once per machine.

    Stored in ``<state_dir>/operators.json`` (mode 0600), never in the repository.
    """
    return stored_passwords(_credentials_file(settings), settings.pbx.demo_operators, nbytes=18)


def _read_template(directory: Path, name: str) -> _Template:
    try:
        return _Template((directory / name).read_text())
    except FileNotFoundError as exc:
        raise PbxError(f"Asterisk template {name} missing in {directory}") from exc


def _format_seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _pgsql_values(settings: Settings) -> dict[str, object]:
    """res_pgsql.conf from ``database_url`` and ``pbx.db_user``: the database siaga112 writes
    operators to, read by Asterisk as its own role. The root shares the host's network, so
    127.0.0.1 is the host's PostgreSQL. res_pgsql takes one server: of several (a primary and
    its replica), the first; a centre renders with a URL whose host follows the primary (a
    virtual IP, pgbouncer, a DNS name: docs/operations.md)."""
    # str(): settings built with model_copy(update=...) may hold the URL as a plain string.
    target = parse_database_url(str(settings.database_url))
    host, port = target.hosts[0]
    # Asterisk's own read-only role when configured (`siaga112 db roles` creates it).
    pbx = settings.pbx
    user = pbx.db_user or target.username or "postgres"
    if pbx.db_user:
        password = pbx.db_password.get_secret_value() if pbx.db_password else ""
    else:
        password = target.password or ""
    return {
        "pg_host": host,
        "pg_port": port,
        "pg_dbname": target.database or "siaga112",
        "pg_user": user,
        "pg_password": password,
    }


# Asterisk's directories (asterisk.conf) on a PBX host: Debian's.
STANDARD_DIRECTORIES: dict[str, str] = {
    "etc": "/etc/asterisk",
    "lib": "/var/lib/asterisk",
    "spool": "/var/spool/asterisk",
    "run": "/var/run/asterisk",
    "log": "/var/log/asterisk",
    "cache": "/var/cache/asterisk",
}


def node_directories(prefix: str) -> dict[str, str]:
    """The directories of one of several nodes sharing a root: all under ``prefix``."""
    return {key: f"{prefix.rstrip('/')}/{key}" for key in STANDARD_DIRECTORIES}


# Of several FastAGI servers, a try that is not the last may take at most this share of the
# budget: one that accepts and never answers must leave the next a chance. It is above the
# server's own share (AgiServer answers within 60% of the budget however slow its writes), so a
# healthy but slow server is never cut for it.
AGI_TRY_SHARE = 0.7
# A try with less left than this is not started: the call goes on to the queue.
AGI_MIN_TRY_S = 0.05

_NOW_US = "${STRFTIME(,,%s.%6q)}"
_AGI_ARGS = (
    "${EXTEN},${SIAGA112_B64_PAI},${SIAGA112_B64_PANI},${SIAGA112_B64_GEO},${CALLERID(pres)},"
    "${SIAGA112_B64_LOC},${SIAGA112_LOC_METHOD},${SYSTEMNAME}"
)


def _agi_steps(settings: Settings, *, agi_app: str) -> str:
    """The dialplan lines between ``runagi`` and ``agidone``: one AGI() per target.

    One target renders as it always did: the budget armed, one AGI(). Several: a deadline taken
    at the first try; each try is armed with what is left (the tries before the last with at
    most AGI_TRY_SHARE of the budget), and runs only while the one before did not succeed. A
    try whose time runs out ends in the T extension, which moves on to the next (``agiN``)."""
    key = settings.agi_secret.get_secret_value()
    budget_s = settings.agi.budget_ms / 1000
    targets = settings.agi.agi_targets() if agi_app == "AGI" else settings.agi.agi_targets()[:1]

    def call(target: str) -> str:
        # t: when this try starts (Unix time, microseconds), so the server can tell how long
        # the request waited before it was accepted (siaga112_agi_wait_seconds).
        return f" same => n,{agi_app}(agi://{target}/incoming?key={key}&t={_NOW_US},{_AGI_ARGS})\n"

    if len(targets) == 1:
        return f" same => n,Set(TIMEOUT(absolute)={budget_s:.3f})\n" + call(targets[0])
    now = "${STRFTIME(,,%s.%3q)}"
    cap = f"{budget_s * AGI_TRY_SHARE:.3f}"
    lines = [f" same => n,Set(SIAGA112_AGI_DEADLINE=$[{now} + {budget_s:.3f}])\n"]
    for i, target in enumerate(targets, start=1):
        last = i == len(targets)
        if i > 1:
            lines.append(f' same => n(agi{i}),GotoIf($["${{AGISTATUS}}" = "SUCCESS"]?agidone)\n')
        lines.append(f" same => n,Set(SIAGA112_AGI_LEFT=$[${{SIAGA112_AGI_DEADLINE}} - {now}])\n")
        lines.append(f" same => n,GotoIf($[${{SIAGA112_AGI_LEFT}} < {AGI_MIN_TRY_S}]?queue)\n")
        left = (
            "${SIAGA112_AGI_LEFT}"
            if last
            else f"$[${{IF($[${{SIAGA112_AGI_LEFT}} < {cap}]?${{SIAGA112_AGI_LEFT}}:{cap})}}]"
        )
        lines.append(f" same => n,Set(SIAGA112_AGI_TRY={i})\n")
        lines.append(f" same => n,Set(TIMEOUT(absolute)={left})\n")
        lines.append(call(target))
    return "".join(lines)


def _agi_timeout_next(settings: Settings) -> str:
    """T extension: with several FastAGI servers, a try that ran out of time moves on to the
    next one (which checks what is left of the budget); after the last, the queue."""
    tries = len(settings.agi.agi_targets())
    if tries == 1:
        return ""
    return (
        f" same => n,GotoIf($[${{SIAGA112_AGI_TRY}} < {tries}]"
        "?${SIAGA112_DIALLED},agi$[${SIAGA112_AGI_TRY} + 1])\n"
    )


def render_config(
    settings: Settings,
    *,
    operator_passwords: Mapping[str, str] | None = None,
    hostname: str | None = None,
    node: PbxNode | None = None,
    directories: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Render the whole Asterisk configuration: file name -> content.

    Keys are file names under ``/etc/asterisk`` of the root, plus ``hosts`` (the root's
    ``/etc/hosts``). Without ``operator_passwords`` the per-machine ones are used (and created
    on first use); the AMI secret comes from ``settings.ami_secret``. ``node`` is one of
    ``settings.pbx_nodes`` (default: the first): its systemname, SIP and AMI addresses.
    ``directories`` are Asterisk's own (``STANDARD_DIRECTORIES`` unless given).
    """
    node = node if node is not None else settings.pbx_nodes[0]
    dirs = dict(directories) if directories is not None else STANDARD_DIRECTORIES
    directory = templates_dir(settings)
    passwords = (
        dict(operator_passwords)
        if operator_passwords is not None
        else operator_credentials(settings)
    )
    pbx = settings.pbx
    numbers = list(dict.fromkeys([*pbx.emergency_numbers, *pbx.alias_numbers]))
    budget_s = _format_seconds(settings.agi.budget_ms)

    operator_part = _read_template(directory, "pjsip-operator.conf.part")
    operator_sections = "".join(
        operator_part.substitute(ext=ext, password=passwords[ext]) for ext in pbx.demo_operators
    )
    emergency_part = _read_template(directory, "extensions-emergency.conf.part")
    overflow = _overflow_parts(pbx)

    def emergency(number: str, *, agi_app: str = "AGI", queue: str = "") -> str:
        return emergency_part.substitute(
            number=number,
            agi_steps=_agi_steps(settings, agi_app=agi_app),
            default_queue=queue or "${SIAGA112_DEFAULT_QUEUE}",
            flagged_notice=prompt(FLAGGED_NOTICE).sound,
            recording_name=RECORDING_NAME,
            overflow_lines=overflow.dialplan,
        )

    emergency_extensions = "".join(emergency(number) for number in numbers)
    bench_extensions = bench_queues = bench_answer = ""
    if pbx.bench_numbers:
        bench_extensions = (
            "; Benchmark only (PbxSettings.bench_numbers): the emergency path into the bench\n"
            f"; queue, {BENCH_AGI_NUMBER} with the AGI step, {BENCH_PLAIN_NUMBER} without it.\n"
            + emergency(BENCH_AGI_NUMBER, queue=BENCH_QUEUE)
            + emergency(BENCH_PLAIN_NUMBER, agi_app="NoOp", queue=BENCH_QUEUE)
        )
        members = [f"bench-op-{i:02d}" for i in range(1, BENCH_MEMBERS + 1)]
        # Not from [queue-template]: app_queue takes the first "strategy" line, the template's.
        bench_queues = (
            "\n; Benchmark only (PbxSettings.bench_numbers): answered inside Asterisk.\n"
            f"[{BENCH_QUEUE}]\n"
            "strategy = rrmemory\nringinuse = yes\nwrapuptime = 0\ntimeout = 15\nretry = 1\n"
            "joinempty = yes\nleavewhenempty = no\nautofill = yes\nannounce-frequency = 0\n"
            "periodic-announce-frequency = 0\nannounce-holdtime = no\nannounce-position = no\n"
            "reportholdtime = no\nsetinterfacevar = yes\nsetqueuevar = yes\n"
            "setqueueentryvar = yes\nservicelevel = 15\nweight = 10\n"
            + "".join(f"member => Local/{m}@{BENCH_ANSWER_CONTEXT}/n\n" for m in members)
        )
        # The answering side: answer at once, wait for the caller to hang up (never first).
        # Its own CDR is disabled: the caller's leg carries the call (Local/...;1 as dstchannel).
        bench_answer = (
            f"\n[{BENCH_ANSWER_CONTEXT}]\n"
            "exten => _b.,1,Set(CDR_PROP(disable)=1)\n"
            " same => n,Answer()\n"
            " same => n,Wait(120)\n"
            " same => n,Hangup()\n"
        )
    operator_extensions = "\n".join(
        f"exten => {ext},1,Dial(PJSIP/{ext},30)\n same => n,Hangup()" for ext in pbx.demo_operators
    )
    member_lines = "\n".join(
        [f"member => PJSIP/{ext}" for ext in pbx.demo_operators] + overflow.members
    )
    cdr_fields = ", ".join(
        _CDR_FIELD_SPECS.get(f, f"{f}(uservar)" if f.startswith("siaga112_") else f)
        for f in CDR_CSV_FIELDS
    )

    values: dict[str, object] = {
        "astdatadir": ASTERISK_DATA_DIR,
        "language": LANGUAGE,
        "sip_bind": node.sip_address,
        # Every Uniqueid/Linkedid of the node is then "<systemname>-<epoch>.<seq>": ids of two
        # nodes never collide, and each id says its node.
        "systemname_line": (
            f"systemname = {node.systemname}"
            if node.systemname
            else "; systemname: unset (one node; ids are <epoch>.<seq>)"
        ),
        **{f"dir_{key}": value for key, value in dirs.items()},
        "sip_port": pbx.sip_port,
        "outbound_trunk": pbx.outbound_trunk,
        "carrier_match_lines": "\n".join(f"match = {a}" for a in pbx.carrier_addresses),
        "operator_sections": operator_sections,
        "emergency_extensions": emergency_extensions,
        "bench_extensions": bench_extensions,
        "bench_queues": bench_queues,
        "bench_answer": bench_answer,
        "operator_extensions": operator_extensions,
        "queue_name": pbx.queue_name,
        "low_queue_name": pbx.low_queue_name,
        "member_lines": member_lines,
        "monitor_lines": (
            f"monitor-format = {settings.recordings.format}\n"
            if settings.recordings.enabled
            else "; (recording disabled: SIAGA112_RECORDINGS__ENABLED=false)\n"
        ),
        "overflow_rule_line": overflow.rule_line,
        "overflow_rules": overflow.rules,
        "overflow_context": OVERFLOW_CONTEXT,
        "reload_context": RELOAD_CONTEXT,
        "overflow_extensions": overflow.extensions,
        "agi_host": settings.agi.host,
        "agi_port": settings.agi.port,
        "agi_budget_s": budget_s,
        "agi_timeout_next": _agi_timeout_next(settings),
        "ami_bind": node.ami_host,
        "ami_permit_lines": "\n".join(f"permit = {net}" for net in settings.ami.permit),
        "ami_port": node.ami_port,
        "ami_username": settings.ami.username,
        "ami_secret": settings.ami_secret.get_secret_value(),
        "eventfilter_lines": "\n".join(
            [f"eventfilter(action(include),name({e})) =" for e in AMI_EVENTS]
            + [
                f"eventfilter(action(include),name({e}),header({h}),method(starts_with)) = {v}"
                for e, h, v in AMI_SCOPED_EVENTS
            ]
            + [
                f"eventfilter(action(include),name({e}),header(Queue),method(exact))"
                f" = {pbx.queue_name}"
                for e in AMI_QUEUE_EVENTS
            ]
        ),
        "noload_lines": "\n".join(f"noload => {m}.so" for m in NOLOAD_MODULES),
        "declined_lines": "\n".join(f"decline = {t}" for t in STASIS_DECLINED_TYPES),
        "disabled_events": ",".join(AMI_DISABLED_EVENTS),
        "rtp_start": pbx.rtp_start,
        "rtp_end": pbx.rtp_end,
        "cdr_file": pbx.cdr_file_name,
        "cdr_fields": cdr_fields,
        "hostname": hostname if hostname is not None else socket.gethostname(),
        **_pgsql_values(settings),
    }
    return {name: _read_template(directory, name).substitute(values) for name in CONFIG_FILES}


# The files render_config writes (names under /etc/asterisk, plus the root's /etc/hosts).
CONFIG_FILES: tuple[str, ...] = (
    "asterisk.conf",
    "modules.conf",
    "logger.conf",
    "manager.conf",
    "pjsip.conf",
    "extensions.conf",
    "queues.conf",
    "queuerules.conf",
    "rtp.conf",
    "cdr.conf",
    "cdr_custom.conf",
    "geolocation.conf",
    "sorcery.conf",
    "extconfig.conf",
    "res_pgsql.conf",
    "stasis.conf",
    "hosts",
)


@dataclass(frozen=True, slots=True)
class _OverflowParts:
    members: list[str]
    rule_line: str
    rules: str
    extensions: str
    dialplan: str


def _overflow_parts(pbx: PbxSettings) -> _OverflowParts:
    """queues.conf members and rule, queuerules.conf, the overflow context and the lines the
    emergency path runs before Queue() (see OVERFLOW_PENALTY). Empty when there are no
    overflow targets."""
    if not pbx.overflow_targets:
        return _OverflowParts([], "", "", "; No overflow targets configured.", "")
    members: list[str] = []
    extensions: list[str] = []
    for target in pbx.overflow_targets:
        key = target.removeprefix("PJSIP/")
        local = f"Local/{key}@{OVERFLOW_CONTEXT}/n"
        name = f"{OVERFLOW_MEMBER_PREFIX}{key}"
        if target.startswith("PJSIP/"):
            # A supervisor's phone: its own device state decides (not rung while busy or
            # unregistered).
            members.append(f"member => {local},{OVERFLOW_PENALTY},{name},{target}")
            extensions.append(f"exten => {key},1,Dial({target})\n same => n,Hangup()")
        else:
            # A neighbouring centre's number: rung for several callers at once (ringinuse).
            members.append(f"member => {local},{OVERFLOW_PENALTY},{name},,yes")
            extensions.append(
                f"exten => {key},1,Dial(PJSIP/carrier/sip:{key}@${{SIAGA112_OUTBOUND_TRUNK}})"
                "\n same => n,Hangup()"
            )
    after = pbx.overflow_after_s
    if after > 0:
        rule_line = f"defaultrule = {OVERFLOW_RULE}\n"
        # QUEUE_MAX_PENALTY only changes for callers that have it (flagged numbers, below).
        rules = (
            f"[{OVERFLOW_RULE}]\npenaltychange => {after},{OVERFLOW_PENALTY},,{OVERFLOW_PENALTY}\n"
        )
        dialplan = (
            " ; Overflow: operators ring first; after the wait the queue rule raises them to the\n"
            " ; overflow targets' penalty (rules change only variables set here). A flagged\n"
            " ; number reaches the overflow targets only after the wait.\n"
            " same => n,Set(QUEUE_RAISE_PENALTY=0)\n"
            " same => n,ExecIf($[${LEN(${SIAGA112_FLAGGED})} > 0]?Set(QUEUE_MAX_PENALTY=0))\n"
        )
    else:
        rule_line = rules = ""
        dialplan = (
            " ; Overflow with no wait: operators and overflow targets ring together.\n"
            f" same => n,Set(QUEUE_RAISE_PENALTY={OVERFLOW_PENALTY})\n"
        )
    return _OverflowParts(members, rule_line, rules, "\n".join(extensions), dialplan)


# Package samples that would add contexts/users or warnings to a centre's PBX.
REMOVED_FILES = ("users.conf", "extensions.ael", "extensions.lua")

# Files holding secrets: readable by the asterisk group only.
SECRET_FILES = frozenset({"manager.conf", "pjsip.conf", "res_pgsql.conf", "extensions.conf"})


def write_config(settings: Settings, directory: Path, *, node: PbxNode | None = None) -> list[Path]:
    """Render the configuration into ``directory`` (an ``/etc/asterisk`` to be, on a PBX host
    that is not the sandbox) for ``node`` (default: the first): files holding secrets get mode
    0640, the others 0644. ``hosts`` is the sandbox root's /etc/hosts and is not written.
    Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in render_config(settings, node=node).items():
        if name == "hosts":
            continue
        path = directory / name
        tmp = path.with_name(f".{name}.{os.getpid()}")
        mode = 0o640 if name in SECRET_FILES else 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
        written.append(path)
    return written
