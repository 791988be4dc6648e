"""The local Asterisk 22 sandbox: build its root, render its configuration, start and stop it.

Asterisk 22 comes from Debian sid and runs in its own root filesystem (DESIGN.md section 3):
``mmdebstrap`` builds it once under the cache directory, and Asterisk runs as the ``asterisk``
user via ``chroot`` inside a private mount namespace, so the ``/dev`` and ``/proc`` mounts it
needs vanish with the process and the host never sees them.

The configuration is rendered from :class:`~siaga112.config.Settings` and the templates in the
repository's ``asterisk/`` directory (placeholders ``@@{name}``; ``${...}`` stays Asterisk's).

FastAGI contract of the rendered dialplan (``agi://<agi.host>:<agi.port>/incoming``), one round
trip for all headers; every header value is base64 (empty when the header is absent)::

    agi_arg_1  dialled number (112 or an alias number)
    agi_arg_2  base64(P-Asserted-Identity)
    agi_arg_3  base64(P-Access-Network-Info)
    agi_arg_4  base64(Geolocation header)
    agi_arg_5  caller presentation, ${CALLERID(pres)} (allowed_not_screened, prohib, ...)
    agi_arg_6  base64(${GEOLOC_PROFILE(effective_location)}), empty without a location
    agi_arg_7  ${GEOLOC_PROFILE(method)} (e.g. gps), empty without a location

The handler may set ``SIAGA112_INCIDENT_ID``, ``SIAGA112_QUEUE`` (empty: default queue) and
``SIAGA112_PRIORITY`` (queue priority). The queue step runs whatever the AGI step did.

Time budget of the AGI step: res_agi has no timeout of its own for a connected FastAGI server
(``run_agi`` waits with ``ms = -1``). The dialplan therefore arms ``TIMEOUT(absolute)`` for
``agi.budget_ms`` together with ``AGIEXITONHANGUP=yes``: when the budget runs out the channel is
soft-hung-up with the *timeout* cause, AGI() returns (the server gets ``HANGUP``), and the
dialplan continues at the ``T`` extension, which clears the timeout and goes on to the queue.
A closed port fails at once; an unreachable host fails after at most 2 s (``MAX_AGI_CONNECT``,
compiled in) -- both with ``AGISTATUS=FAILURE``, and the call queues.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from siaga112.config import LOW_QUEUE_SUFFIX, PbxSettings, Settings
from siaga112.telephony.ami_events import OVERFLOW_CONTEXT, OVERFLOW_MEMBER_PREFIX
from siaga112.telephony.callback_legs import CALLBACK_ID_PREFIX

__all__ = [
    "AMI_EVENTS",
    "AMI_SCOPED_EVENTS",
    "BENCH_AGI_NUMBER",
    "BENCH_OPERATOR_CONTACT",
    "BENCH_PLAIN_NUMBER",
    "BENCH_QUEUE",
    "CDR_CSV_FIELDS",
    "CDR_FILE_NAME",
    "LOW_QUEUE_SUFFIX",
    "OVERFLOW_PENALTY",
    "OVERFLOW_RULE",
    "RECORDINGS_SUBDIR",
    "PbxError",
    "PbxStatus",
    "cdr_csv_path",
    "cli",
    "down",
    "ensure_root",
    "operator_credentials",
    "recordings_path",
    "render_config",
    "status",
    "templates_dir",
    "up",
]

# Events that pass the AMI eventfilter: what the call tracker needs, nothing else.
AMI_EVENTS: tuple[str, ...] = (
    "FullyBooted",
    "Newchannel",
    "Newstate",
    "Hangup",
    "BridgeEnter",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
    "QueueMemberStatus",
    "QueueMemberAdded",
    "QueueMemberRemoved",
    "QueueMemberPause",
    # Callbacks: the first leg of siaga112's own Originates (only they raise it).
    "OriginateResponse",
)

# Events that pass only for some channels (advanced eventfilter: name, header, starts_with):
# DialEnd of callback legs, whose Uniqueid siaga112 chose. app_queue raises DialEnd for every
# member it rings, so an unscoped DialEnd would grow the stream with every 112 call.
AMI_SCOPED_EVENTS: tuple[tuple[str, str, str], ...] = (("DialEnd", "Uniqueid", CALLBACK_ID_PREFIX),)

CDR_FILE_NAME = "siaga112-cdr.csv"

# Recordings land in <astspooldir>/monitor/RECORDINGS_SUBDIR/YYYY/MM/DD/<Uniqueid>-<epoch>.wav:
# MixMonitor makes the directories; the date is the call's arrival (UTC), the epoch the
# operator's answer. The name is what links a file to its call, also one that siaga112 never
# heard of (siaga112.recordings.files.parse_recording_name).
RECORDINGS_SUBDIR = "siaga112"
RECORDING_NAME = RECORDINGS_SUBDIR + "/${STRFTIME(${EPOCH},UTC,%Y/%m/%d)}/${UNIQUEID}-^{EPOCH}"

# Benchmark numbers (``PbxSettings.bench_numbers``, bench/surge.py): BENCH_AGI_NUMBER runs the
# emergency path exactly (Answer, AGI step, Queue); BENCH_PLAIN_NUMBER runs the same path with
# AGI() replaced by NoOp() (same arguments, nothing sent). Both queue into BENCH_QUEUE, whose
# BENCH_MEMBERS members are endpoints with a static contact, BENCH_OPERATOR_CONTACT: one SIPp
# phone answering every call. The queue rings them even while in use (ringinuse), and there are
# many so that callers do not wait for each other: app_queue lets only as many callers ring at
# once as members are available (with ringall: one, the head), and the others look again only
# once a second.
BENCH_AGI_NUMBER = "1129"
BENCH_PLAIN_NUMBER = "1128"
BENCH_QUEUE = "siaga112-bench"
BENCH_MEMBERS = 32
BENCH_OPERATOR_CONTACT = "sip:bench-operator@127.0.0.1:5071"

# Column order of the CDR CSV (cdr_custom advanced mapping). start/answer/end are epoch seconds
# (double, 0 when absent); duration/billsec whole seconds. ``siaga112_*`` columns are set by
# the dialplan with Set(CDR(...)). A call gives several records (one per queue member rung,
# then one for the hang-up handler); the one with the highest ``sequence`` per ``linkedid`` is
# the last and carries ``siaga112_operator`` (the member interface that answered, if any).
CDR_CSV_FIELDS: tuple[str, ...] = (
    "uniqueid",
    "linkedid",
    "sequence",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "clid",
    "src",
    "dst",
    "dcontext",
    "channel",
    "dstchannel",
    "lastapp",
    "siaga112_dialled",
    "siaga112_pres",
    "siaga112_pai",
    "siaga112_pani",
    "siaga112_geolocation",
    "siaga112_location",
    "siaga112_agistatus",
    "siaga112_incident",
    "siaga112_queue",
    "siaga112_queuestatus",
    "siaga112_operator",
    # Appended later (older lines end before them, siaga112.telephony.cdr reads both): when the
    # caller entered the queue and when an operator answered, epoch seconds with microseconds.
    "siaga112_enqueued",
    "siaga112_answered",
)
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
    # music on hold: the root has no MOH sounds (asterisk-moh-opsound is not installed), so
    # loaded it logs an ERROR for the missing directory at every start and disables itself
    "res_musiconhold",
)  # fmt: skip

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
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 20.0
_CLI_TIMEOUT_S = 15.0


class PbxError(Exception):
    """The sandbox could not be built, started, stopped or reached; the message says why."""


@dataclass(frozen=True, slots=True)
class PbxStatus:
    root: Path
    root_present: bool
    running: bool
    pid: int | None
    version: str | None
    sip_endpoints: int | None
    sip_contacts: int | None
    active_channels: int | None

    def describe(self) -> str:
        if not self.root_present:
            return f"Asterisk root not built yet ({self.root}); `siaga112 pbx up` builds it"
        if not self.running:
            return f"Asterisk stopped (root {self.root})"
        return (
            f"Asterisk {self.version or '?'} running, pid {self.pid}; "
            f"{self.sip_endpoints if self.sip_endpoints is not None else '?'} SIP endpoints, "
            f"{self.sip_contacts if self.sip_contacts is not None else '?'} registered phones, "
            f"{self.active_channels if self.active_channels is not None else '?'} active channels"
        )


class _Template(string.Template):
    # ``${...}`` belongs to Asterisk; our placeholders are ``@@{name}``.
    delimiter = "@@"


# ---------------------------------------------------------------------------------------------
# paths


def templates_dir(settings: Settings) -> Path:
    """The directory holding the Asterisk templates (``asterisk/`` of the repository)."""
    if settings.pbx.templates_dir is not None:
        return settings.pbx.templates_dir
    return Path(__file__).resolve().parents[3] / "asterisk"


def cdr_csv_path(settings: Settings) -> Path:
    """Where the CDR CSV lands on the host (inside the root's /var/log/asterisk/cdr-custom)."""
    return settings.pbx_root / "var" / "log" / "asterisk" / "cdr-custom" / CDR_FILE_NAME


def recordings_path(settings: Settings) -> Path:
    """Where the call recordings are read from on this host (``pbx.recordings_path``, else the
    sandbox's ``/var/spool/asterisk/monitor/siaga112``)."""
    if settings.pbx.recordings_path is not None:
        return settings.pbx.recordings_path
    return settings.pbx_root / "var" / "spool" / "asterisk" / "monitor" / RECORDINGS_SUBDIR


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "asterisk.pid"


def _log_file(settings: Settings) -> Path:
    return settings.state_dir / "asterisk.log"


def _credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "operators.json"


# ---------------------------------------------------------------------------------------------
# credentials


def operator_credentials(settings: Settings) -> dict[str, str]:
    """Passwords of the demo operators (extension -> password), generated once per machine.

    Stored in ``<state_dir>/operators.json`` (mode 0600), never in the repository.
    """
    path = _credentials_file(settings)
    current: dict[str, str] = {}
    if path.exists():
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            current = {str(k): str(v) for k, v in loaded.items()}
    missing = [ext for ext in settings.pbx.demo_operators if ext not in current]
    if missing:
        for ext in missing:
            current[ext] = secrets.token_urlsafe(18)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(current, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    return {ext: current[ext] for ext in settings.pbx.demo_operators}


# ---------------------------------------------------------------------------------------------
# rendering


def _read_template(directory: Path, name: str) -> _Template:
    try:
        return _Template((directory / name).read_text())
    except FileNotFoundError as exc:
        raise PbxError(f"Asterisk template {name} missing in {directory}") from exc


def _format_seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _pgsql_values(settings: Settings) -> dict[str, object]:
    """res_pgsql.conf from ``database_url``: the same database siaga112 writes operators to.
    The root shares the host's network, so 127.0.0.1 is the host's PostgreSQL."""
    # str(): settings built with model_copy(update=...) may hold the URL as a plain string.
    url = make_url(str(settings.database_url))
    return {
        "pg_host": url.host or "127.0.0.1",
        "pg_port": url.port or 5432,
        "pg_dbname": url.database or "siaga112",
        "pg_user": url.username or "postgres",
        "pg_password": url.password or "",
    }


def render_config(
    settings: Settings,
    *,
    operator_passwords: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> dict[str, str]:
    """Render the whole Asterisk configuration: file name -> content.

    Keys are file names under ``/etc/asterisk`` of the root, plus ``hosts`` (the root's
    ``/etc/hosts``). Without ``operator_passwords`` the per-machine ones are used (and created
    on first use); the AMI secret comes from ``settings.ami_secret``.
    """
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
            agi_app=agi_app,
            agi_host=settings.agi.host,
            agi_port=settings.agi.port,
            agi_budget_s=budget_s,
            default_queue=queue or "${SIAGA112_DEFAULT_QUEUE}",
            flagged_announcement=pbx.flagged_announcement,
            recording_name=RECORDING_NAME,
            overflow_lines=overflow.dialplan,
        )

    emergency_extensions = "".join(emergency(number) for number in numbers)
    bench_extensions = bench_queues = bench_endpoints = ""
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
            "\n; Benchmark only (PbxSettings.bench_numbers): one SIPp phone takes every call.\n"
            f"[{BENCH_QUEUE}]\n"
            "strategy = rrmemory\nringinuse = yes\nwrapuptime = 0\ntimeout = 15\nretry = 1\n"
            "joinempty = yes\nleavewhenempty = no\nautofill = yes\nannounce-frequency = 0\n"
            "periodic-announce-frequency = 0\nannounce-holdtime = no\nannounce-position = no\n"
            "reportholdtime = no\nsetinterfacevar = yes\nsetqueuevar = yes\n"
            "setqueueentryvar = yes\nservicelevel = 15\nweight = 10\n"
            + "".join(f"member => PJSIP/{m}\n" for m in members)
        )
        bench_endpoints = (
            "\n; Benchmark only (PbxSettings.bench_numbers): queue members that all reach one\n"
            "; SIPp phone at a static contact.\n"
            "[bench-operator-aor]\n"
            "type = aor\n"
            f"contact = {BENCH_OPERATOR_CONTACT}\n"
            + "".join(
                f"\n[{m}]\ntype = endpoint\ntransport = transport-udp\ncontext = operators\n"
                "disallow = all\nallow = ulaw,alaw\naors = bench-operator-aor\n"
                "direct_media = no\nrtp_symmetric = yes\n"
                for m in members
            )
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
        "sip_bind": pbx.sip_bind,
        "sip_port": pbx.sip_port,
        "outbound_trunk": pbx.outbound_trunk,
        "carrier_match_lines": "\n".join(f"match = {a}" for a in pbx.carrier_addresses),
        "operator_sections": operator_sections,
        "emergency_extensions": emergency_extensions,
        "bench_extensions": bench_extensions,
        "bench_queues": bench_queues,
        "bench_endpoints": bench_endpoints,
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
        "overflow_extensions": overflow.extensions,
        "agi_host": settings.agi.host,
        "agi_port": settings.agi.port,
        "agi_budget_s": budget_s,
        "ami_bind": settings.ami.host,
        "ami_permit_lines": "\n".join(f"permit = {net}" for net in settings.ami.permit),
        "ami_port": settings.ami.port,
        "ami_username": settings.ami.username,
        "ami_secret": settings.ami_secret.get_secret_value(),
        "eventfilter_lines": "\n".join(
            [f"eventfilter(action(include),name({e})) =" for e in AMI_EVENTS]
            + [
                f"eventfilter(action(include),name({e}),header({h}),method(starts_with)) = {v}"
                for e, h, v in AMI_SCOPED_EVENTS
            ]
        ),
        "noload_lines": "\n".join(f"noload => {m}.so" for m in NOLOAD_MODULES),
        "rtp_start": pbx.rtp_start,
        "rtp_end": pbx.rtp_end,
        "cdr_file": CDR_FILE_NAME,
        "cdr_fields": cdr_fields,
        "hostname": hostname if hostname is not None else socket.gethostname(),
        **_pgsql_values(settings),
    }
    names = (
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
        "hosts",
    )
    return {name: _read_template(directory, name).substitute(values) for name in names}


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
_REMOVED_FILES = ("users.conf", "extensions.ael", "extensions.lua")

# Files holding secrets: readable by the asterisk group only.
_SECRET_FILES = frozenset({"manager.conf", "pjsip.conf", "res_pgsql.conf"})


# ---------------------------------------------------------------------------------------------
# root filesystem


def _require_root() -> None:
    if os.geteuid() != 0:
        raise PbxError(
            "the Asterisk sandbox needs root (mmdebstrap, chroot and mount namespaces); "
            "run this command as root"
        )


def _host_mirror() -> str | None:
    """The first non-security ``URIs:``/``deb`` mirror of the host's apt configuration."""
    candidates: list[str] = []
    sources_dir = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for line in path.read_text().splitlines():
            if line.strip().lower().startswith("uris:"):
                candidates.extend(line.split(":", 1)[1].split())
    legacy = [Path("/etc/apt/sources.list")]
    legacy += sorted(sources_dir.glob("*.list")) if sources_dir.is_dir() else []
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if m:
                candidates.append(m.group(1))
    for uri in candidates:
        if "security" not in uri and uri.startswith(("http://", "https://", "file:")):
            return uri.rstrip("/")
    return None


def _mirror(settings: Settings) -> str:
    if settings.pbx.mirror:
        return settings.pbx.mirror.rstrip("/")
    mirror = _host_mirror()
    if mirror is None:
        raise PbxError(
            "no Debian mirror found in /etc/apt/sources.list.d/*.sources or "
            "/etc/apt/sources.list; set SIAGA112_PBX__MIRROR"
        )
    return mirror


def _check_mirror(mirror: str, suite: str) -> None:
    if not mirror.startswith(("http://", "https://")):
        return
    url = f"{mirror}/dists/{suite}/InRelease"
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - http(s) checked above
    try:
        with urllib.request.urlopen(request, timeout=15):  # noqa: S310
            pass
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise PbxError(f"Debian mirror unreachable: {url} ({exc})") from exc


def _ensure_mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    # Root already (checked): install it the way a newcomer would.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"],
    ):
        subprocess.run(cmd, env=env, check=False, timeout=600, capture_output=True)
        found = shutil.which("mmdebstrap")
        if found:
            return found
    raise PbxError("mmdebstrap is missing and could not be installed: apt-get install mmdebstrap")


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo)."""
    prefix = str(path.resolve())
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _safe_rmtree(path: Path) -> None:
    """Delete a (partial) root, refusing if anything is mounted inside it (DESIGN.md danger)."""
    mounts = _mounts_under(path)
    if mounts:
        raise PbxError(
            f"refusing to delete {path}: live mounts inside it ({', '.join(mounts)}); "
            "unmount them first (umount -R)"
        )
    shutil.rmtree(path)


def _root_complete(root: Path) -> bool:
    return (root / "usr" / "sbin" / "asterisk").exists() and (root / "etc" / "passwd").exists()


def ensure_root(settings: Settings) -> Path:
    """Build the Asterisk root with mmdebstrap when missing; return its path.

    The tree is built next to the final one and renamed when complete, so an interrupted build
    never leaves a half root in place.
    """
    root = settings.pbx_root
    if _root_complete(root):
        return root
    _require_root()
    if root.exists():
        raise PbxError(f"{root} exists but is not a complete Asterisk root; remove it first")
    mmdebstrap = _ensure_mmdebstrap()
    mirror = _mirror(settings)
    _check_mirror(mirror, settings.pbx.suite)
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in root.parent.glob(f".{root.name}.tmp-*"):
        _safe_rmtree(stale)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    cmd = [
        mmdebstrap,
        "--variant=apt",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        "--include=asterisk,asterisk-core-sounds-en",
        settings.pbx.suite,
        str(tmp),
        mirror,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PbxError(f"mmdebstrap did not finish within {exc.timeout} s") from exc
    if proc.returncode != 0 or not _root_complete(tmp):
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        if tmp.exists():
            _safe_rmtree(tmp)
        raise PbxError(f"mmdebstrap failed (exit {proc.returncode}) from {mirror}:\n{tail}")
    os.rename(tmp, root)
    return root


def _asterisk_ids(root: Path) -> tuple[int, int]:
    uid = gid = None
    for line in (root / "etc" / "passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == "asterisk":
            uid, gid = int(parts[2]), int(parts[3])
    if uid is None or gid is None:
        raise PbxError(f"no asterisk user in {root}/etc/passwd")
    return uid, gid


def _walk(top: Path) -> Iterator[Path]:
    yield top
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in (*dirnames, *filenames):
            yield Path(dirpath) / name


def _prepare_root(settings: Settings, rendered: Mapping[str, str]) -> None:
    root = settings.pbx_root
    uid, gid = _asterisk_ids(root)
    # /var/run is a symlink to /run inside the root: never resolve it on the host.
    for rel in (
        "var/log/asterisk",
        "var/log/asterisk/cdr-custom",
        "var/spool/asterisk",
        f"var/spool/asterisk/monitor/{RECORDINGS_SUBDIR}",
        "var/lib/asterisk",
        "var/lib/asterisk/keys",
        "var/cache/asterisk",
        "run/asterisk",
    ):
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        for p in _walk(d):
            st = p.lstat()
            if st.st_uid != uid or st.st_gid != gid:
                os.chown(p, uid, gid, follow_symlinks=False)
    etc = root / "etc" / "asterisk"
    for name in _REMOVED_FILES:
        (etc / name).unlink(missing_ok=True)
    for name, content in rendered.items():
        target = root / "etc" / "hosts" if name == "hosts" else etc / name
        mode = 0o640 if name in _SECRET_FILES else 0o644
        tmp = target.with_name(f".{target.name}.siaga112")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.chown(tmp, 0, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, target)


# ---------------------------------------------------------------------------------------------
# process control


def _proc_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap if it is our child and has exited
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and comm == "asterisk"


def _read_pid(settings: Settings) -> int | None:
    try:
        pid = int(_pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _proc_alive(pid) else None


def _run_cli(root: Path, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), "asterisk", "-rx", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(settings: Settings, command: str, *, timeout: float = _CLI_TIMEOUT_S) -> str:
    """Run one Asterisk CLI command (``asterisk -rx``) in the sandbox and return its output."""
    _require_root()
    root = settings.pbx_root
    if not _root_complete(root):
        raise PbxError(f"no Asterisk root at {root}; run `siaga112 pbx up` first")
    try:
        proc = _run_cli(root, command, timeout)
    except subprocess.TimeoutExpired as exc:
        raise PbxError(f"asterisk -rx {command!r} timed out after {timeout} s") from exc
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Unable to connect to remote asterisk" in out:
        raise PbxError(f"asterisk -rx {command!r} failed: {out.strip()}")
    return proc.stdout


def _responds(root: Path) -> bool:
    try:
        proc = _run_cli(root, "core show version", 5)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and proc.stdout.startswith("Asterisk")


def up(settings: Settings, *, timeout: float = _START_TIMEOUT_S) -> PbxStatus:
    """Build the root if needed, write the configuration and start Asterisk (idempotent).

    When Asterisk already runs, the configuration is re-rendered and ``core reload``-ed
    (changes to modules.conf or asterisk.conf need ``down`` + ``up``).
    """
    _require_root()
    root = ensure_root(settings)
    rendered = render_config(settings)
    _prepare_root(settings, rendered)
    if _read_pid(settings) is not None or _responds(root):
        cli(settings, "core reload")
        return status(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = _log_file(settings)
    script = (
        'mount --bind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
        'exec chroot "$1" asterisk -f -U asterisk -G asterisk'
    )
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             str(root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )  # fmt: skip
    # unshare (without --fork), sh and chroot all exec: the pid is Asterisk's.
    _pid_file(settings).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PbxError(
                f"Asterisk exited at start (status {proc.returncode}); see {log_path} and "
                f"{root}/var/log/asterisk/messages.log"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PbxError(f"Asterisk did not finish booting within {timeout} s; see {log_path}")
        try:
            booted = _run_cli(root, "core waitfullybooted", min(remaining, 10))
        except subprocess.TimeoutExpired:
            continue
        if booted.returncode == 0 and "fully booted" in booted.stdout:
            break
        time.sleep(0.1)
    return status(settings)


def down(settings: Settings, *, timeout: float = _STOP_TIMEOUT_S) -> bool:
    """Stop Asterisk (``core stop now``, then SIGTERM, then SIGKILL). True if it was running."""
    _require_root()
    root = settings.pbx_root
    pid = _read_pid(settings)
    was_running = pid is not None
    if _root_complete(root) and _responds(root):
        was_running = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            _run_cli(root, "core stop now", 10)
    deadline = time.monotonic() + timeout
    if pid is not None:
        sig_sent: set[signal.Signals] = set()
        while _proc_alive(pid):
            left = deadline - time.monotonic()
            if left < timeout / 2 and signal.SIGTERM not in sig_sent:
                os.kill(pid, signal.SIGTERM)
                sig_sent.add(signal.SIGTERM)
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
                break
            time.sleep(0.05)
    else:
        while _root_complete(root) and _responds(root) and time.monotonic() < deadline:
            time.sleep(0.1)
    _pid_file(settings).unlink(missing_ok=True)
    return was_running


def _count(text: str, pattern: str) -> int | None:
    if "No objects found" in text:
        return 0
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def status(settings: Settings) -> PbxStatus:
    """What the sandbox is doing now (never raises for a stopped or missing sandbox)."""
    root = settings.pbx_root
    present = _root_complete(root)
    pid = _read_pid(settings)
    if not present or os.geteuid() != 0 or not _responds(root):
        return PbxStatus(root, present, False, pid, None, None, None, None)

    def ask(command: str) -> str:
        try:
            return cli(settings, command)
        except PbxError:
            return ""

    version = ask("core show version").strip() or None
    return PbxStatus(
        root=root,
        root_present=True,
        running=True,
        pid=pid,
        version=version,
        sip_endpoints=_count(ask("pjsip list endpoints"), r"Objects found: (\d+)"),
        sip_contacts=_count(ask("pjsip list contacts"), r"Objects found: (\d+)"),
        active_channels=_count(ask("core show channels count"), r"(\d+) active channel"),
    )
