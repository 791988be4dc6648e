"""One Settings object for the whole service, read from the environment.

Every variable is prefixed ``SIAGA112_`` (nested sections use ``__``, e.g.
``SIAGA112_PBX__SIP_PORT``). Secrets are ``SecretStr`` so they never end up in
logs or ``repr``; none has a default value in code.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PostgresDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "siaga112"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "siaga112"


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8112, ge=1, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    page_size_max: int = Field(default=200, ge=1)


class WorkerSettings(BaseModel):
    """`siaga112 worker` (siaga112.worker): where it serves its /metrics and /healthz."""

    host: str = "127.0.0.1"
    port: int = Field(default=8113, ge=1, le=65535)


class AgiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=4573, ge=1, le=65535)
    # What the dialplan allows the AGI step before it goes on to the queue without it.
    budget_ms: int = Field(default=1500, ge=50)
    # A caller who called within this many minutes before is put ahead in the queue.
    repeat_window_min: int = Field(default=10, ge=0, le=24 * 60)
    # Queue priority (QUEUE_PRIO) for such repeat callers; others have 0.
    repeat_priority: int = Field(default=10, ge=1, le=100)


class AmiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "siaga112"
    # None: the local stack generates one under the state directory (mode 0600).
    secret: SecretStr | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 15.0
    # Networks the AMI account accepts logins from (manager.conf permit=): the hosts siaga112
    # runs on. Loopback for the local stack; add the service hosts' addresses in a deployment.
    permit: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"], min_length=1)
    # Which process follows the AMI event stream (call tracker, operator states, resync) and
    # reconciles from the CDR file: "worker" (`siaga112 worker`; serve keeps an actions-only
    # AMI session) or "serve" (everything in serve's event loop).
    events_in: Literal["worker", "serve"] = "worker"

    @field_validator("permit")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in value]


# The queue flagged (prank/nuisance) numbers wait in: the main queue's name with this suffix.
LOW_QUEUE_SUFFIX = "-low"
# An overflow target: a SIP endpoint (a supervisor's phone, "PJSIP/9001") or a number dialled
# through the carrier trunk (a neighbouring centre, "+62215550112").
_OVERFLOW_ENDPOINT = re.compile(r"PJSIP/[A-Za-z0-9_-]{1,40}")
_OVERFLOW_NUMBER = re.compile(r"\+?[0-9]{2,20}")


class PbxSettings(BaseModel):
    """Values that differ per site and are rendered into the Asterisk configuration."""

    root: Path | None = None  # default: <cache_dir>/asterisk-root
    mirror: str | None = None  # default: the host's own apt mirror
    suite: str = "sid"
    sip_bind: str = "127.0.0.1"
    sip_port: int = Field(default=5060, ge=1, le=65535)
    # Source addresses of the carrier trunk / SBC. The local simulated carrier sends from
    # 127.0.0.2 so that operator phones on 127.0.0.1 are not taken for it (DESIGN.md §3).
    carrier_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.2"])
    # host:port of the carrier trunk / SBC for calls out of the centre (transfers to agency
    # numbers). Locally a SIPp phone on the simulated carrier's address; not port 5060, which
    # SIPp callers started with `-p 0` take first.
    outbound_trunk: str = "127.0.0.2:5090"
    emergency_numbers: list[str] = Field(default_factory=lambda: ["112"])
    # Other short codes that the carrier may route to the centre (110, 113, 118, 119 ...).
    alias_numbers: list[str] = Field(default_factory=list)
    rtp_start: int = 10000
    rtp_end: int = 30000
    queue_name: str = "emergency"
    # Played to a caller whose number is flagged (prank/nuisance) before the low-priority queue.
    # A core sound by default; a site records its own in Bahasa Indonesia and names it here.
    flagged_announcement: str = "queue-thankyou"
    demo_operators: list[str] = Field(default_factory=lambda: ["6001", "6002"])
    # Overflow: where a waiting caller ALSO rings when no operator is available, or once it has
    # waited overflow_after_s (see the README). Empty: no overflow.
    overflow_targets: list[str] = Field(default_factory=list)
    overflow_after_s: int = Field(default=30, ge=0, le=3600)
    # Asterisk configuration templates; default: the repository's asterisk/ directory.
    templates_dir: Path | None = None
    # Asterisk's CDR CSV that reconciliation reads; default: the one inside the local root.
    # Where Asterisk runs on another host, point this at a copy or a shared mount.
    cdr_path: Path | None = None
    # Where siaga112 reads call recordings: Asterisk's <astspooldir>/monitor/siaga112 as seen
    # from this host; default: the one inside the local root. Elsewhere a shared mount.
    recordings_path: Path | None = None
    # Benchmark only (bench/surge.py), never in a deployment: renders two extra numbers in
    # [from-carrier] that run the emergency path into a queue whose one member (the first demo
    # operator) is rung even while in use -- one with the AGI step, one without it.
    bench_numbers: bool = False

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

    @property
    def low_queue_name(self) -> str:
        return self.queue_name + LOW_QUEUE_SUFFIX


class DispatchSettings(BaseModel):
    """Dispatch to agencies: acknowledgement alert and webhook delivery (the outbox worker)."""

    # A dispatch still `sent` after this long raises `dispatch_unacknowledged` (once).
    ack_timeout_s: float = Field(default=120.0, gt=0)
    # One webhook POST, connect to last byte; a receiver slower than this counts as failed.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # How long a claimed outbox row stays invisible to other workers; must exceed the timeout
    # so that a worker that died mid-delivery is retried by another after this.
    claim_lease_s: float = Field(default=60.0, gt=0)
    # Backoff between attempts: exponential from base, capped, with jitter.
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    poll_s: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=20, ge=1, le=500)

    @model_validator(mode="after")
    def _lease_covers_timeout(self) -> DispatchSettings:
        if self.claim_lease_s <= self.webhook_timeout_s:
            raise ValueError("claim_lease_s must be longer than webhook_timeout_s")
        return self


_BOTH_CHANNELS: list[Literal["https", "sms"]] = ["https", "sms"]


class AmlSenderSettings(BaseModel):
    """One system allowed to post AML messages (an AML relay or the centre's SMS gateway)."""

    secrets: list[SecretStr] = Field(min_length=1)
    channels: list[Literal["https", "sms"]] = Field(default_factory=lambda: _BOTH_CHANNELS.copy())


class LocationSettings(BaseModel):
    """Caller location: best-location rule, cell identity split, cell-tower radius."""

    # Where calls' locations are derived (siaga112.locations.worker): "worker", a process of
    # its own (`siaga112 worker`, which `siaga112 serve` starts unless --no-worker), or
    # "inline", tasks beside the AGI server in the serving process.
    derive_in: Literal["worker", "inline"] = "worker"
    # How often the worker looks for calls to locate.
    worker_poll_s: float = Field(default=0.25, gt=0, le=30)

    # Locations observed within this many seconds of the newest fix compete on precision for
    # "best"; older ones are history. Operator-confirmed locations win regardless.
    recent_window_s: float = Field(default=300.0, gt=0)
    # Leftmost bits of a 36-bit NR cell identity that are the gNB ID (TS 38.413: 22..32);
    # operator-configured, so per deployment. Only the displayed split depends on it.
    gnb_id_bits: int = Field(default=24, ge=22, le=32)
    # Smallest radius given to a cell-tower location: OpenCelliD's `range` is an estimate from
    # crowd samples and is 0 or tiny for cells seen a few times; a tower is not the caller.
    cell_min_radius_m: float = Field(default=250.0, ge=0)
    # A by-reference SIP Geolocation (an http(s) URI instead of a PIDF-LO body) is kept raw;
    # siaga112 dereferences it only when this is on, and then only on the hosts listed (empty:
    # any host). The URI comes from the network, so fetching it is an outbound request the
    # carrier decides; keep it off unless the carrier's LIS is known.
    fetch_geolocation_by_reference: bool = False
    geolocation_reference_hosts: list[str] = Field(default_factory=list)
    geolocation_fetch_timeout_s: float = Field(default=2.0, gt=0, le=30)
    # AML senders (relays, SMS gateways) by name, each with its HMAC-SHA256 secrets (several
    # during a rotation) and the channels it may use. From the environment only, e.g.
    # SIAGA112_LOCATIONS__AML_SENDERS='{"telkomsel-smsc": {"secrets": ["..."],
    # "channels": ["sms"]}}'. Kept out of the database so that dumps and replicas never
    # carry them; HMAC needs the secret itself, so it cannot be stored hashed.
    aml_senders: dict[str, AmlSenderSettings] = Field(default_factory=dict)
    # A signed AML message whose timestamp is further than this from now is refused as a
    # replay; an identical message (same signed bytes) is refused whenever it comes again.
    aml_replay_window_s: float = Field(default=600.0, gt=0)
    # An AML message belongs to a call of the same number offered at most this long after the
    # message's time (it may come first) ...
    aml_match_before_s: float = Field(default=60.0, ge=0)
    # ... or at most this long after the call ended (or while it lasts).
    aml_match_after_end_s: float = Field(default=1800.0, ge=0)


class RecordingSettings(BaseModel):
    """Recording of emergency calls (MixMonitor through the queue), download and retention."""

    # Rendered into queues.conf: off, no call is recorded.
    enabled: bool = True
    # wav: 16-bit PCM, 8 kHz, about 0.96 MB a minute; wav49: GSM in a WAV file, about 0.1 MB
    # a minute (phone quality either way: the network sends G.711 at best).
    format: Literal["wav", "wav49"] = "wav"
    # Recordings older than this are deleted by the purge (never one on legal hold).
    retention_days: int = Field(default=90, ge=1, le=3650)
    # How often finished recordings are linked to their calls (also those made while siaga112
    # was down: the file name holds the call's Uniqueid).
    sweep_s: float = Field(default=10.0, gt=0, le=3600)
    # Files changed within this many seconds may still be written: left for the next sweep.
    settle_s: float = Field(default=2.0, ge=0, le=600)
    # A file whose call is not known to have ended is linked once it is this old unchanged
    # (Asterisk stopped mid-call, or the call row is late).
    stale_s: float = Field(default=600.0, gt=0)
    # Date directories looked at by each sweep (today and the days before).
    sweep_days: int = Field(default=2, ge=1, le=400)
    purge_every_s: float = Field(default=3600.0, gt=0)


class DuplicateSettings(BaseModel):
    """Suggesting that an incident may be about the same event as another (several callers
    about one fire); an operator decides and links."""

    # Other open incidents created this close in time are candidates.
    window_min: float = Field(default=30.0, gt=0, le=24 * 60)
    # Best locations this close count as the same place.
    radius_m: float = Field(default=500.0, gt=0, le=50_000)
    # At most this many open incidents of the window are scored (nearest in time first).
    max_scanned: int = Field(default=500, ge=1, le=5000)


class CallbackSettings(BaseModel):
    """Callbacks of abandoned and silent calls: the operator's phone rings first (AMI
    Originate), then the caller is dialled out through the carrier trunk."""

    # How long the operator's phone rings before the attempt counts as not taken.
    operator_ring_s: int = Field(default=30, ge=5, le=120)
    # How long the caller's phone rings (Dial timeout) before the attempt is `no_answer`.
    caller_ring_s: int = Field(default=45, ge=5, le=180)
    # The number the caller sees (the trunk may override it); digits only, as it goes into the
    # dialplan through an AMI variable.
    caller_id: str = Field(default="112", pattern=r"^\+?[0-9]{2,20}$")
    # An attempt whose outcome never arrived (events lost, siaga112 restarted) is closed as
    # `failed` once both ring times and this margin have passed, and its claim released.
    outcome_margin_s: int = Field(default=30, ge=5, le=600)


class ConsoleSettings(BaseModel):
    """The browser console at /console: sign-in, sessions, map, time zone."""

    # Sessions end after this long without a request, and after `session_max_h` in any case.
    session_idle_min: int = Field(default=60, ge=1, le=24 * 60)
    session_max_h: int = Field(default=12, ge=1, le=72)
    # Failed sign-ins in a row before the account is locked, and for how long.
    lockout_after: int = Field(default=5, ge=1, le=100)
    lockout_min: int = Field(default=15, ge=1, le=24 * 60)
    # Secure cookies also over plain http (behind a TLS-terminating proxy that does not say so).
    force_secure_cookies: bool = False
    # The centre's zone: times on screen are shown in it (WIB, WITA or WIT).
    timezone: Literal["Asia/Jakarta", "Asia/Pontianak", "Asia/Makassar", "Asia/Jayapura"] = (
        "Asia/Jakarta"
    )
    default_language: Literal["id", "en"] = "id"
    # A tile server (`https://tiles.example/{z}/{x}/{y}.png`) and its attribution. Unset: the
    # offline basemap shipped with the project (country outlines and the boundary file).
    tile_url: str | None = Field(default=None, pattern=r"^https://[^\s'\"]+$")
    tile_attribution: str = Field(default="", max_length=300)
    # A GeoJSON FeatureCollection of the centre's kecamatan (a `name` property each). Unset:
    # the project's approximate demo outlines of Kota Bekasi.
    boundary_file: Path | None = None
    # Where the map opens: the centre's city.
    map_center: tuple[float, float] = (-6.2700, 106.9900)
    map_zoom: int = Field(default=12, ge=3, le=18)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIAGA112_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: PostgresDsn = PostgresDsn("postgresql+asyncpg://postgres@127.0.0.1:5432/siaga112")
    db_pool_size: int = 10
    log_level: str = "INFO"
    state_dir: Path = Field(default_factory=_default_state_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    api: ApiSettings = Field(default_factory=ApiSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    pbx: PbxSettings = Field(default_factory=PbxSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    locations: LocationSettings = Field(default_factory=LocationSettings)
    duplicates: DuplicateSettings = Field(default_factory=DuplicateSettings)
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @property
    def database_url_str(self) -> str:
        return str(self.database_url)

    @property
    def pbx_root(self) -> Path:
        return self.pbx.root if self.pbx.root is not None else self.cache_dir / "asterisk-root"

    @cached_property
    def ami_secret(self) -> SecretStr:
        """The AMI secret from the environment, or one generated once for this machine."""
        if self.ami.secret is not None:
            return self.ami.secret
        path = self.state_dir / "ami-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        return SecretStr(path.read_text().strip())


def load_settings() -> Settings:
    return Settings()
