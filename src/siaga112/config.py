"""One Settings object for the whole service, read from the environment.

Every variable is prefixed ``SIAGA112_`` (nested sections use ``__``, e.g.
``SIAGA112_PBX__SIP_PORT``). Secrets are ``SecretStr`` so they never end up in
logs or ``repr``; none has a default value in code.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field, PostgresDsn, SecretStr
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


class AgiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=4573, ge=1, le=65535)
    # What the dialplan allows the AGI step before it goes on to the queue without it.
    budget_ms: int = Field(default=1500, ge=50)


class AmiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "siaga112"
    # None: the local stack generates one under the state directory (mode 0600).
    secret: SecretStr | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 15.0


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
    emergency_numbers: list[str] = Field(default_factory=lambda: ["112"])
    # Other short codes that the carrier may route to the centre (110, 113, 118, 119 ...).
    alias_numbers: list[str] = Field(default_factory=list)
    rtp_start: int = 10000
    rtp_end: int = 30000
    queue_name: str = "emergency"
    demo_operators: list[str] = Field(default_factory=lambda: ["6001", "6002"])
    # Asterisk configuration templates; default: the repository's asterisk/ directory.
    templates_dir: Path | None = None
    # Asterisk's CDR CSV that reconciliation reads; default: the one inside the local root.
    # Where Asterisk runs on another host, point this at a copy or a shared mount.
    cdr_path: Path | None = None


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
    agi: AgiSettings = Field(default_factory=AgiSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    pbx: PbxSettings = Field(default_factory=PbxSettings)

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
