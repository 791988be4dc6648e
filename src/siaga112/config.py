"""One Settings object for the whole service, read from the environment.

Every variable is prefixed ``SIAGA112_`` (nested sections use ``__``, e.g.
``SIAGA112_PBX__SIP_PORT``). Secrets are ``SecretStr`` so they never end up in
logs or ``repr``; none has a default value in code.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    PostgresDsn,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "siaga112"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "siaga112"


class ApiSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Address the REST API listens on.")
    port: int = Field(default=8112, ge=1, le=65535, description="Port of the REST API.")
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body accepted; a larger one gets 413 `payload_too_large`.",
    )
    page_size_max: int = Field(
        default=200,
        ge=1,
        description="Meant as the largest page a list may ask for, but not read yet: each list "
        "endpoint bounds its `limit` itself (200 for most).",
    )
    auth_failures_max: int = Field(
        default=20,
        ge=1,
        description="Failed authentications (unknown, revoked or expired keys) one source address "
        "may make within the window; past it that address gets 429 until the window has passed "
        "(kept in memory per process, docs/threat-model.md).",
    )
    auth_failures_window_s: float = Field(
        default=60.0, gt=0, description="The window of `auth_failures_max`, in seconds."
    )
    queue_snapshot_s: float = Field(
        default=0.5,
        ge=0,
        le=5,
        description="`GET /v1/queue` is computed at most once in this many seconds per process "
        "and the same snapshot is answered to every reader meanwhile (each read is still "
        "audited on its own): five consoles and a wallboard cost one computation, not six. "
        "0: computed for every request.",
    )
    stream_key_check_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Open event streams re-check their key this often: a revoked or expired "
        "key's stream ends within this many seconds.",
    )
    metrics_allowed_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Source networks that may read `/metrics` (and the workers'): the monitoring "
        "hosts. Metrics carry no caller data but show call volumes and the telephony link's "
        "state; behind a reverse proxy the source is the proxy, so keep `/metrics` off it.",
    )

    @field_validator("metrics_allowed_networks")
    @classmethod
    def _metrics_networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in value]


class WorkerSettings(BaseModel):
    """`siaga112 worker` (siaga112.worker): where it serves its /metrics and /healthz."""

    host: str = Field(
        default="127.0.0.1",
        description="Address where `siaga112 worker` serves its `/metrics` and `/healthz`.",
    )
    port: int = Field(
        default=8113,
        ge=1,
        le=65535,
        description="Port of a worker's `/metrics` and `/healthz`; the second worker that "
        "`siaga112 serve` starts takes the next port (`siaga112 worker --metrics-port` overrides "
        "it).",
    )


class EventsSettings(BaseModel):
    """The live event stream's own table (`stream_events`: operator state changes)."""

    retention_days: int = Field(
        default=7,
        ge=1,
        description="Days an event without an incident (an operator state change) stays in "
        "`stream_events` for consoles that resume with `Last-Event-ID`; the events worker "
        "purges older ones hourly. Incident timelines are not affected.",
    )


class AgiSettings(BaseModel):
    host: str = Field(
        default="127.0.0.1",
        description="Address the FastAGI server listens on; rendered into the dialplan's "
        "`AGI(agi://...)` step.",
    )
    port: int = Field(
        default=4573, ge=1, le=65535, description="Port of the FastAGI server (rendered too)."
    )
    targets: list[str] = Field(
        default_factory=list,
        description="FastAGI servers the dialplan tries in order, as `host:port` (the local "
        "`siaga112 serve` first, then another instance), all within the one `budget_ms`: a "
        "closed port costs nothing, one that accepts and hangs at most 70% of the budget "
        "before the next is tried, and the call goes on to the queue whatever happens. Empty: "
        "`host`:`port` alone.",
    )
    budget_ms: int = Field(
        default=1500,
        ge=50,
        description="The AGI step's time limit in the dialplan (`TIMEOUT(absolute)`), after "
        "which the call goes on to the queue without it; siaga112 answers within 60% of it.",
    )
    repeat_window_min: int = Field(
        default=10,
        ge=0,
        le=24 * 60,
        description="A caller who called within this many minutes before is put ahead in the "
        "queue.",
    )
    repeat_priority: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Queue priority (`QUEUE_PRIO`) of such repeat callers; others have 0.",
    )
    allow_from: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        min_length=1,
        description="Networks the FastAGI server takes requests from: the PBX hosts. Any other "
        "source is refused before a byte is read (counted as `agi_rejected_source`).",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Shared secret the dialplan sends with every AGI request "
        "(`agi://.../incoming?key=...`, rendered into extensions.conf); a request without it is "
        "refused. Default: generated once in the state directory.",
    )

    @field_validator("targets")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r}: expected host:port")
            if re.search(r"[\s/?,()]", host):
                raise ValueError(f"{item!r}: not a host name or address")
            out.append(f"{host}:{int(port)}")
        return out

    def agi_targets(self) -> list[str]:
        """The FastAGI servers the dialplan tries, in order (``host:port``)."""
        return self.targets or [f"{self.host}:{self.port}"]

    @field_validator("allow_from")
    @classmethod
    def _agi_networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in value]

    @field_validator("secret")
    @classmethod
    def _url_safe(cls, value: SecretStr | None) -> SecretStr | None:
        # It travels in the AGI URL of the dialplan: letters, digits, - and _ only.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{16,128}", value.get_secret_value()
        ):
            raise ValueError("16 to 128 characters of A-Z, a-z, 0-9, - and _")
        return value


class AmiSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Asterisk's AMI address.")
    port: int = Field(default=5038, ge=1, le=65535, description="Asterisk's AMI port.")
    username: str = Field(
        default="siaga112", description="AMI account (rendered into manager.conf)."
    )
    secret: SecretStr | None = Field(
        default=None,
        description="AMI secret; manager.conf is rendered with it. Unset: generated once under "
        "the state directory (mode 0600).",
    )
    reconnect_min_s: float = Field(
        default=0.5, description="First wait before reconnecting to AMI after a lost session."
    )
    reconnect_max_s: float = Field(
        default=15.0, description="Longest wait between AMI reconnects (the backoff's cap)."
    )
    permit: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32"],
        min_length=1,
        description="Networks the AMI account accepts logins from (manager.conf `permit=`): "
        "the hosts siaga112 runs on; add the service hosts' addresses in a deployment.",
    )
    events_in: Literal["worker", "serve"] = Field(
        default="worker",
        description="Which process follows the AMI event stream (call progress, operator "
        "states, resync) and reconciles from the CDR file: `worker` (serve keeps an actions-only "
        "AMI session) or `serve` (all in serve's event loop).",
    )

    @field_validator("permit")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in value]


# The queue flagged (prank/nuisance) numbers wait in: the main queue's name with this suffix.
LOW_QUEUE_SUFFIX = "-low"

# Where Asterisk writes what siaga112 reads (rendered into cdr_custom.conf and the dialplan): the
# CDR file under its log directory's cdr-custom/, recordings under <astspooldir>/monitor/.
CDR_FILE_NAME = "siaga112-cdr.csv"
RECORDINGS_SUBDIR = "siaga112"
# An overflow target: a SIP endpoint (a supervisor's phone, "PJSIP/9001") or a number dialled
# through the carrier trunk (a neighbouring centre, "+62215550112").
_OVERFLOW_ENDPOINT = re.compile(r"PJSIP/[A-Za-z0-9_-]{1,40}")
_OVERFLOW_NUMBER = re.compile(r"\+?[0-9]{2,20}")


# A PBX node's name: Asterisk's `systemname` (asterisk.conf), which prefixes every Uniqueid and
# Linkedid the node makes (`<name>-<epoch>.<seq>`), so that calls of two nodes never share an id.
NODE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
# The one node of a deployment that configures none: today's settings, no systemname (its ids
# stay `<epoch>.<seq>`).
DEFAULT_NODE_NAME = "pbx"


@dataclass(frozen=True, slots=True)
class PbxNode:
    """A node as siaga112 uses it (`Settings.pbx_nodes`)."""

    name: str
    # Rendered into asterisk.conf; None for the implicit single node (unprefixed ids).
    systemname: str | None
    ami_host: str
    ami_port: int
    sip_address: str
    cdr_file: Path


class PbxNodeSettings(BaseModel):
    """One Asterisk node of several (`pbx.nodes`): where siaga112 reaches it and reads its CDR."""

    name: str = Field(
        pattern=NODE_NAME_PATTERN,
        description="The node's name, rendered as Asterisk's `systemname`: every Uniqueid and "
        "Linkedid of the node starts with it, and each call records it as its node.",
    )
    ami_host: str = Field(description="The node's AMI address (manager.conf `bindaddr`).")
    ami_port: int = Field(default=5038, ge=1, le=65535, description="The node's AMI port.")
    sip_address: str = Field(
        description="Address of the node's PJSIP UDP transport (the port is `pbx.sip_port`): "
        "where the SIP proxy sends calls and operators' registrations."
    )
    cdr_path: Path | None = Field(
        default=None,
        description="The node's CDR CSV as siaga112's host sees it (a copy or a shared mount). "
        "Default: the sandbox's per-node file.",
    )


class PbxSettings(BaseModel):
    """Values that differ per site and are rendered into the Asterisk configuration."""

    root: Path | None = Field(
        default=None,
        description="The local Asterisk sandbox's root filesystem (built once with mmdebstrap).",
    )
    mirror: str | None = Field(
        default=None, description="Debian mirror the Asterisk root is built from."
    )
    suite: str = Field(default="sid", description="Debian suite of the Asterisk root.")
    sip_bind: str = Field(
        default="127.0.0.1",
        description="Address of the PJSIP UDP transport; also the registrar operators are given.",
    )
    sip_port: int = Field(
        default=5060, ge=1, le=65535, description="Port of the PJSIP UDP transport."
    )
    # The local simulated carrier sends from 127.0.0.2 so that operator phones on 127.0.0.1
    # are not taken for it (DESIGN.md §3).
    carrier_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.2"],
        description="Source addresses of the carrier trunk / SBC, by which Asterisk tells its "
        "calls from operators' phones (pjsip.conf `match`).",
    )
    # Locally a SIPp phone on the simulated carrier's address; not port 5060, which SIPp
    # callers started with `-p 0` take first.
    outbound_trunk: str = Field(
        default="127.0.0.2:5090",
        description="`host:port` of the carrier trunk / SBC for calls out of the centre: "
        "transfers to agency numbers, callbacks, overflow to a number.",
    )
    emergency_numbers: list[str] = Field(
        default_factory=lambda: ["112"], description="Numbers answered as emergency calls."
    )
    alias_numbers: list[str] = Field(
        default_factory=list,
        description='Other short codes the carrier routes to the centre, e.g. `["110","113",'
        '"118","119"]`.',
    )
    rtp_start: int = Field(default=10000, description="First port of the RTP range.")
    rtp_end: int = Field(
        default=30000, description="Last port of the RTP range (a narrow range limits calls)."
    )
    queue_name: str = Field(
        default="emergency",
        description="The operators' queue; flagged numbers wait in the same name with `-low`.",
    )
    prompts_dir: Path | None = Field(
        default=None,
        description="The centre's own recordings of what callers hear: a directory of files "
        "named by prompt id (`flagged-notice.wav`; any format sox reads, converted to 8 kHz "
        "G.711 at setup). A prompt without a recording is spoken from its Bahasa Indonesia "
        "text (src/siaga112/pbxconf/prompts/prompts.toml) by espeak-ng.",
    )
    demo_operators: list[str] = Field(
        default_factory=lambda: ["6001", "6002"],
        description="Operator extensions configured in pjsip.conf (passwords generated per "
        "machine); API-created operators come from PostgreSQL instead.",
    )
    overflow_targets: list[str] = Field(
        default_factory=list,
        description="Where a waiting caller also rings (see Overflow in docs/telephony.md): "
        "`PJSIP/<endpoint>` (a supervisor's phone) or a number dialled through the carrier "
        "trunk (`+62215550112`, a neighbouring centre). Empty: no overflow.",
    )
    overflow_after_s: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="A caller who has waited this long rings the operators and the overflow "
        "targets together (`0`: from the start).",
    )
    templates_dir: Path | None = Field(
        default=None,
        description="Asterisk configuration templates rendered by siaga112 (default: those "
        "shipped in the package, siaga112/pbxconf/templates).",
    )
    cdr_file_name: str = Field(
        default=CDR_FILE_NAME,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.csv$",
        description="Name of the CSV file Asterisk writes its CDR to (cdr_custom, in its log "
        "directory's `cdr-custom/`) and reconciliation reads. The tests and benchmarks use "
        "their own, so that their calls never reach a development database.",
    )
    node_lost_after_s: float = Field(
        default=10.0,
        gt=0,
        description="With several nodes (`pbx.nodes`), a node whose AMI session has been down "
        "this long is taken as lost: the calls still open on it are ended as cut by the node's "
        "loss (outcome `node_lost`) and those with a caller number go on the callback "
        "worklist. With one node an unreachable AMI session ends no call (a blip is likelier "
        "than a dead PBX). Any node that comes back after a restart has its calls from before "
        "that restart ended the same way at once.",
    )
    reconcile_from: AwareDatetime | None = Field(
        default=None,
        description="Calls Asterisk recorded before this time (ISO 8601 with offset) are never "
        "reconciled. Default: when this database was created (`siaga112 db upgrade`), so a "
        "new database does not adopt an old PBX's calls.",
    )
    cdr_path: Path | None = Field(
        default=None,
        description="Asterisk's CDR CSV read by reconciliation; where Asterisk runs on another "
        "host, a copy or a shared mount.",
    )
    recordings_path: Path | None = Field(
        default=None,
        description="Call recordings (Asterisk's `monitor/siaga112`) as this host sees them: "
        "read for downloads, written by the purge; elsewhere a shared mount.",
    )
    nodes: list[PbxNodeSettings] = Field(
        default_factory=list,
        description="The Asterisk nodes siaga112 follows (JSON list, e.g. "
        '`[{"name":"pbx-a","ami_host":"10.0.0.11","sip_address":"10.0.0.11"}, ...]`): one AMI '
        "event follower, CDR reconciliation and call control per node. Empty: one node, "
        f"`{DEFAULT_NODE_NAME}`, from `ami.host`/`ami.port`, `pbx.sip_bind` and the CDR file, "
        "with Asterisk's ids unprefixed.",
    )
    # Two extra numbers in [from-carrier] run the emergency path into a queue whose one member
    # (the first demo operator) is rung even while in use -- one with the AGI step, one without.
    db_user: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="PostgreSQL role Asterisk's realtime link (res_pgsql.conf) logs in as: "
        "`siaga112 db roles` lets it read only the PJSIP tables (`ps_endpoints`, `ps_auths`, "
        "`ps_aors`). Unset: the user of `SIAGA112_DATABASE_URL` (the service's own role, which "
        "can also write them).",
    )
    db_password: SecretStr | None = Field(
        default=None,
        description="Password of `db_user` (rendered into res_pgsql.conf, mode 0640); unset "
        "where PostgreSQL trusts the PBX host.",
    )
    bench_numbers: bool = Field(
        default=False,
        description="Benchmark only (bench/surge.py), never in a deployment: renders the "
        "benchmark numbers 1129 and 1128 into the dialplan.",
    )

    @field_validator("overflow_targets")
    @classmethod
    def _valid_overflow_targets(cls, targets: list[str]) -> list[str]:
        keys: set[str] = set()
        for target in targets:
            if not (_OVERFLOW_ENDPOINT.fullmatch(target) or _OVERFLOW_NUMBER.fullmatch(target)):
                raise ValueError(
                    f"overflow target {target!r} is neither PJSIP/<endpoint> nor a number "
                    "(digits, optionally with a leading +)"
                )
            key = target.removeprefix("PJSIP/")
            if key in keys:
                raise ValueError(f"overflow target {key!r} is given twice")
            keys.add(key)
        return targets

    @field_validator("nodes")
    @classmethod
    def _distinct_nodes(cls, nodes: list[PbxNodeSettings]) -> list[PbxNodeSettings]:
        for what in ("name", "sip_address"):
            seen = [getattr(n, what) for n in nodes]
            twice = {v for v in seen if seen.count(v) > 1}
            if twice:
                raise ValueError(f"node {what} {sorted(twice)[0]!r} is given twice")
        ami = [(n.ami_host, n.ami_port) for n in nodes]
        if len(set(ami)) != len(ami):
            raise ValueError("two nodes have the same AMI address and port")
        return nodes

    @property
    def low_queue_name(self) -> str:
        return self.queue_name + LOW_QUEUE_SUFFIX


class DispatchSettings(BaseModel):
    """Dispatch to agencies: acknowledgement alert and webhook delivery (the outbox worker)."""

    ack_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A dispatch still `sent` after this long puts `dispatch_unacknowledged` on "
        "the incident's timeline (once).",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="Time limit of one webhook POST, connect to last byte; a slower receiver "
        "counts as failed.",
    )
    claim_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a claimed outbox row stays invisible to other workers; longer "
        "than the webhook timeout, so that a delivery whose worker died is retried after it.",
    )
    retry_base_s: float = Field(
        default=2.0,
        gt=0,
        description="First wait before retrying a failed delivery; the backoff doubles from "
        "here, with jitter.",
    )
    retry_max_s: float = Field(
        default=300.0, gt=0, description="Longest wait between delivery attempts."
    )
    poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the delivery worker looks for due messages when not woken by a "
        "new one.",
    )
    batch_size: int = Field(
        default=20, ge=1, le=500, description="Outbox rows one worker claims at a time."
    )

    @model_validator(mode="after")
    def _lease_covers_timeout(self) -> DispatchSettings:
        if self.claim_lease_s <= self.webhook_timeout_s:
            raise ValueError("claim_lease_s must be longer than webhook_timeout_s")
        return self


_BOTH_CHANNELS: list[Literal["https", "sms"]] = ["https", "sms"]


class AmlSenderSettings(BaseModel):
    """One system allowed to post AML messages (an AML relay or the centre's SMS gateway)."""

    secrets: list[SecretStr] = Field(
        min_length=1,
        description="The sender's HMAC-SHA256 secrets; several during a rotation.",
    )
    channels: list[Literal["https", "sms"]] = Field(
        default_factory=lambda: _BOTH_CHANNELS.copy(),
        description="Channels the sender may use: `https` (`POST /aml/v1/https`) and `sms` "
        "(`POST /aml/v1/sms`).",
    )


class LocationSettings(BaseModel):
    """Caller location: best-location rule, cell identity split, cell-tower radius."""

    derive_in: Literal["worker", "inline"] = Field(
        default="worker",
        description="Where calls' locations are derived: `worker` (`siaga112 worker`, a process "
        "of its own, which `siaga112 serve` starts unless `--no-worker`) or `inline` (tasks "
        "beside the AGI server).",
    )
    worker_poll_s: float = Field(
        default=0.25, gt=0, le=30, description="How often the worker looks for calls to locate."
    )
    recent_window_s: float = Field(
        default=300.0,
        gt=0,
        description="Fixes observed within this many seconds of the newest one compete on "
        "precision for the best location; an operator-confirmed location wins regardless.",
    )
    gnb_id_bits: int = Field(
        default=24,
        ge=22,
        le=32,
        description="Leftmost bits of a 36-bit NR cell identity that are the gNB ID (TS 38.413: "
        "22..32, operator-configured); only the displayed split depends on it.",
    )
    # OpenCelliD's `range` is an estimate from crowd samples and is 0 or tiny for cells seen a
    # few times; a tower is not the caller.
    cell_min_radius_m: float = Field(
        default=250.0, ge=0, description="Smallest radius given to a cell-tower location."
    )
    # The URI comes from the network, so fetching it is an outbound request the carrier
    # decides; keep it off unless the carrier's LIS is known.
    fetch_geolocation_by_reference: bool = Field(
        default=False,
        description="GET a call's by-reference `Geolocation: <https://...>` and add its PIDF-LO "
        "location (no redirects, 64 KiB at most, one try); off, the URI is only kept.",
    )
    geolocation_reference_hosts: list[str] = Field(
        default_factory=list,
        description='Hosts that may be fetched, e.g. `["lis.telkomsel.example"]`; empty: any host.',
    )
    geolocation_fetch_timeout_s: float = Field(
        default=2.0, gt=0, le=30, description="Time limit of the whole by-reference fetch."
    )
    # Kept out of the database so that dumps and replicas never carry them; HMAC needs the
    # secret itself, so it cannot be stored hashed.
    aml_senders: dict[str, AmlSenderSettings] = Field(
        default_factory=dict,
        description="Systems allowed to post AML (relays, SMS gateways), by name, as JSON, e.g. "
        '`{"telkomsel-smsc": {"secrets": ["..."], "channels": ["sms"]}}`; from the environment '
        "only.",
    )
    aml_replay_window_s: float = Field(
        default=600.0,
        gt=0,
        description="A signed AML message whose timestamp is further than this from now is "
        "refused as a replay (a late SMS is accepted once); the same signed bytes are refused "
        "whenever they come again.",
    )
    aml_match_before_s: float = Field(
        default=60.0,
        ge=0,
        description="An AML message belongs to a call of the same number offered at most this "
        "long after the message's time (it may come first) ...",
    )
    aml_match_after_end_s: float = Field(
        default=1800.0,
        ge=0,
        description="... or at most this long after the call ended (or while it lasts).",
    )


class OutboundSettings(BaseModel):
    """Requests siaga112 makes to addresses others chose: agency webhooks and by-reference
    caller locations (siaga112.net). By default only public addresses over https."""

    # Tests with a receiver on this host add "127.0.0.1/32".
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks that may be reached although internal (loopback, private, "
        "link-local, the service's own addresses), e.g. an agency's system on the government "
        'network: `["10.20.0.0/16"]`.',
    )
    allow_http: bool = Field(
        default=False,
        description="Allow plain `http://` destinations (unencrypted: the caller's number and "
        "location travel in clear text).",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in value]


class RecordingSettings(BaseModel):
    """Recording of emergency calls (MixMonitor through the queue), download and retention."""

    enabled: bool = Field(
        default=True,
        description="Record answered emergency calls (rendered into queues.conf); off, no call "
        "is recorded.",
    )
    # Phone quality either way: the network sends G.711 at best.
    format: Literal["wav", "wav49"] = Field(
        default="wav",
        description="`wav` (16-bit PCM 8 kHz, about 0.96 MB a minute) or `wav49` (GSM in WAV, "
        "about 0.1 MB a minute).",
    )
    retention_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="Recordings older than this are deleted by the purge, except those on legal "
        "hold.",
    )
    sweep_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often finished recordings are linked to their calls (also those made "
        "while siaga112 was down: the file name holds the call's Uniqueid).",
    )
    settle_s: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="A file of an ended call is finished once it was not written for this "
        "long; one changed more recently is left for the next sweep.",
    )
    stale_s: float = Field(
        default=600.0,
        gt=0,
        description="A file whose call is not known to have ended is linked once it is this old "
        "unchanged (Asterisk stopped mid-call, or the call row is late).",
    )
    sweep_days: int = Field(
        default=2,
        ge=1,
        le=400,
        description="Date directories each sweep reads (today and the days before); the first "
        "sweep after a start reads the whole retention period.",
    )
    purge_every_s: float = Field(
        default=3600.0, gt=0, description="How often the retention purge runs."
    )


class DuplicateSettings(BaseModel):
    """Suggesting that an incident may be about the same event as another (several callers
    about one fire); an operator decides and links."""

    window_min: float = Field(
        default=30.0,
        gt=0,
        le=24 * 60,
        description="Other open incidents created this close in time are duplicate candidates.",
    )
    radius_m: float = Field(
        default=500.0,
        gt=0,
        le=50_000,
        description="Best locations this close count as the same place.",
    )
    max_scanned: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="At most this many open incidents of the window are scored (nearest in time "
        "first).",
    )


class CallbackSettings(BaseModel):
    """Callbacks of abandoned and silent calls: the operator's phone rings first (AMI
    Originate), then the caller is dialled out through the carrier trunk."""

    operator_ring_s: int = Field(
        default=30,
        ge=5,
        le=120,
        description="How long a callback rings the operator's phone before the attempt counts "
        "as not taken (`operator_unavailable`).",
    )
    caller_ring_s: int = Field(
        default=45,
        ge=5,
        le=180,
        description="Then how long the caller's phone rings (Dial timeout) before the attempt "
        "is `no_answer`.",
    )
    # Digits only: it goes into the dialplan through an AMI variable.
    caller_id: str = Field(
        default="112",
        pattern=r"^\+?[0-9]{2,20}$",
        description="The number a called-back caller sees (the carrier may override it).",
    )
    outcome_margin_s: int = Field(
        default=30,
        ge=5,
        le=600,
        description="An attempt with no outcome from Asterisk (events lost, siaga112 restarted) "
        "after both ring times and this margin is closed as `failed` and its claim released.",
    )


class ConsoleSettings(BaseModel):
    """The browser console at /console: sign-in, sessions, map, time zone."""

    session_idle_min: int = Field(
        default=60,
        ge=1,
        le=24 * 60,
        description="A console session ends after this many minutes without a request.",
    )
    session_max_h: int = Field(
        default=12, ge=1, le=72, description="A console session ends after this many hours."
    )
    session_cache_s: float = Field(
        default=3.0,
        ge=0,
        le=30,
        description="A console session verified against the database is trusted for reads "
        "(GET) for up to this many seconds per process without asking the database again. "
        "Signing out ends it at once on the instance that signed it out; a session ended "
        "elsewhere (`siaga112 user disable`, sign-out through another instance) may still read "
        "for up to this long there, never write: every write checks the database. 0: every "
        "request checks the database.",
    )
    lockout_after: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed sign-ins in a row before the account is locked.",
    )
    lockout_min: int = Field(
        default=15, ge=1, le=24 * 60, description="How long a locked account stays locked."
    )
    force_secure_cookies: bool = Field(
        default=False,
        description="Secure cookies also over plain http (behind a TLS-terminating proxy that "
        "does not say so).",
    )
    timezone: Literal["Asia/Jakarta", "Asia/Pontianak", "Asia/Makassar", "Asia/Jayapura"] = Field(
        default="Asia/Jakarta",
        description="The centre's zone: times on screen are shown in it (WIB, WITA or WIT).",
    )
    default_language: Literal["id", "en"] = Field(
        default="id", description="The console's language until a user picks one."
    )
    tile_url: str | None = Field(
        default=None,
        pattern=r"^https://[^\s'\"]+$",
        description="A tile server (`https://tiles.example/{z}/{x}/{y}.png`). Unset: the offline "
        "basemap shipped with the project (country outlines and the boundary file).",
    )
    tile_attribution: str = Field(
        default="", max_length=300, description="The tile server's attribution, shown on the map."
    )
    boundary_file: Path | None = Field(
        default=None,
        description="A GeoJSON FeatureCollection of the centre's kecamatan (a `name` property "
        "each). Unset: the project's approximate demo outlines of Kota Bekasi.",
    )
    map_center: tuple[float, float] = Field(
        default=(-6.2700, 106.9900),
        description="Where the map opens (lat, lon): the centre's city.",
    )
    map_zoom: int = Field(default=12, ge=3, le=18, description="The map's zoom when it opens.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIAGA112_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: PostgresDsn = Field(
        default=PostgresDsn("postgresql+asyncpg://postgres@127.0.0.1:5432/siaga112"),
        description="PostgreSQL (created when missing by `siaga112 db upgrade`); Asterisk's "
        "realtime operators are configured from it too.",
    )
    # Additive to database_url (which stays the running service's own, non-owner role): who
    # owns the schema and who creates the roles (docs/operations.md, "Database roles").
    database_owner_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the role that owns the schema: `siaga112 db upgrade` "
        "migrates through it. Unset: `SIAGA112_DATABASE_URL` (one role for everything).",
    )
    database_admin_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of a superuser (or a role with CREATEROLE and CREATEDB) that "
        "`siaga112 db roles` uses once to create or update the owner, service and Asterisk "
        "roles and the database; nothing else uses it.",
    )
    db_pool_size: int = Field(
        default=10, description="Database connections each process keeps in its pool."
    )
    log_level: str = Field(
        default="INFO", description="Log level: `DEBUG`, `INFO`, `WARNING`, `ERROR`."
    )
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Generated secrets (AMI, operator passwords; mode 0600), Asterisk's pid and "
        "log, SIPp logs.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="The Asterisk root filesystem of the local sandbox.",
    )
    api: ApiSettings = Field(default_factory=ApiSettings, description="The REST API.")
    worker: WorkerSettings = Field(
        default_factory=WorkerSettings,
        description="`siaga112 worker` processes: their `/metrics` and `/healthz`.",
    )
    events: EventsSettings = Field(
        default_factory=EventsSettings,
        description="The live event stream: how long events without an incident are kept.",
    )
    agi: AgiSettings = Field(
        default_factory=AgiSettings,
        description="The FastAGI server: the dialplan's step that opens the call and incident.",
    )
    ami: AmiSettings = Field(
        default_factory=AmiSettings,
        description="The Asterisk Manager Interface: call control, the event stream.",
    )
    pbx: PbxSettings = Field(
        default_factory=PbxSettings,
        description="Values that differ per site and are rendered into the Asterisk "
        "configuration, and where the local sandbox and Asterisk's files are.",
    )
    dispatch: DispatchSettings = Field(
        default_factory=DispatchSettings,
        description="Dispatch to agencies: acknowledgement alert and webhook delivery.",
    )
    locations: LocationSettings = Field(
        default_factory=LocationSettings,
        description="Caller location: derivation, best-location rule, cells, by-reference "
        "Geolocation, AML.",
    )
    duplicates: DuplicateSettings = Field(
        default_factory=DuplicateSettings,
        description="Suggesting incidents that may be about the same event as another.",
    )
    recordings: RecordingSettings = Field(
        default_factory=RecordingSettings,
        description="Recording of answered emergency calls, linking and retention.",
    )
    callbacks: CallbackSettings = Field(
        default_factory=CallbackSettings,
        description="Callbacks of abandoned and silent calls.",
    )
    outbound: OutboundSettings = Field(
        default_factory=OutboundSettings,
        description="What siaga112 may connect to on its own (webhooks, by-reference "
        "Geolocation): internal addresses refused unless allowed, https only unless allowed.",
    )
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings,
        description="The operators' browser console at `/console`: sign-in, sessions, map, time "
        "zone.",
    )

    @property
    def database_url_str(self) -> str:
        return str(self.database_url)

    @property
    def database_owner_url_str(self) -> str:
        """Where migrations run: the schema owner's URL, else the service's own."""
        if self.database_owner_url is not None:
            return self.database_owner_url.get_secret_value()
        return self.database_url_str

    @field_validator("database_owner_url", "database_admin_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            PostgresDsn(value.get_secret_value())
        return value

    def own_hosts(self) -> list[str]:
        """The addresses this deployment's own listeners and database are configured on."""
        return [
            h
            for h in (
                self.api.host,
                self.worker.host,
                self.agi.host,
                self.ami.host,
                self.pbx.sip_bind,
                self.database_url.hosts()[0].get("host") or "",
            )
            if h
        ]

    @property
    def pbx_nodes(self) -> list[PbxNode]:
        """The Asterisk nodes followed: `pbx.nodes`, else the one node of today's settings."""
        if not self.pbx.nodes:
            return [
                PbxNode(
                    name=DEFAULT_NODE_NAME,
                    systemname=None,
                    ami_host=self.ami.host,
                    ami_port=self.ami.port,
                    sip_address=self.pbx.sip_bind,
                    cdr_file=self.cdr_file,
                )
            ]
        return [
            PbxNode(
                name=n.name,
                systemname=n.name,
                ami_host=n.ami_host,
                ami_port=n.ami_port,
                sip_address=n.sip_address,
                cdr_file=n.cdr_path
                if n.cdr_path is not None
                else self.node_state_root(n.name) / "log" / "cdr-custom" / self.pbx.cdr_file_name,
            )
            for n in self.pbx.nodes
        ]

    def pbx_node(self, name: str) -> PbxNode:
        for node in self.pbx_nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def node_state_root(self, name: str) -> Path:
        """The sandbox's own directories of node ``name`` (config, run, spool, log, lib), inside
        the shared root so that the node's chrooted Asterisk sees them."""
        return self.pbx_root / "var" / "lib" / "siaga112-nodes" / name

    @property
    def pbx_root(self) -> Path:
        return self.pbx.root if self.pbx.root is not None else self.cache_dir / "asterisk-root"

    @property
    def cdr_file(self) -> Path:
        """Asterisk's CDR CSV as this host sees it (``pbx.cdr_path``, else the sandbox's)."""
        if self.pbx.cdr_path is not None:
            return self.pbx.cdr_path
        return self.pbx_root / "var" / "log" / "asterisk" / "cdr-custom" / self.pbx.cdr_file_name

    @property
    def recordings_dir(self) -> Path:
        """Where the call recordings are read from on this host (``pbx.recordings_path``, else
        the sandbox's ``/var/spool/asterisk/monitor/siaga112``)."""
        if self.pbx.recordings_path is not None:
            return self.pbx.recordings_path
        return self.pbx_root / "var" / "spool" / "asterisk" / "monitor" / RECORDINGS_SUBDIR

    @cached_property
    def ami_secret(self) -> SecretStr:
        """The AMI secret from the environment, or one generated once for this machine."""
        return self.ami.secret or self._generated_secret("ami-secret")

    @cached_property
    def agi_secret(self) -> SecretStr:
        """The FastAGI shared secret from the environment, or one generated once."""
        return self.agi.secret or self._generated_secret("agi-secret")

    def _generated_secret(self, name: str) -> SecretStr:
        path = self.state_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        return SecretStr(path.read_text().strip())


def stored_passwords(path: Path, names: Sequence[str], *, nbytes: int) -> dict[str, str]:
    """Passwords for ``names``, generated once per machine and kept in the JSON file ``path``
    (mode 0600, written atomically), never in the repository: demo SIP and console accounts."""
    current: dict[str, str] = {}
    if path.exists():
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            current = {str(k): str(v) for k, v in loaded.items()}
    if any(name not in current for name in names):
        for name in names:
            current.setdefault(name, secrets.token_urlsafe(nbytes))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(current, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    return {name: current[name] for name in names}


def load_settings() -> Settings:
    return Settings()
