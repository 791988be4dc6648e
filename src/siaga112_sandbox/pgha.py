"""A PostgreSQL primary and its streaming replica on this machine, for development, tests and
the HA drill: ``siaga112 pgha up|status|kill|promote|down``.

Two clusters of Debian's PostgreSQL (``/usr/lib/postgresql/<version>/bin``) on their own ports
(127.0.0.1:5441 and :5442 by default), apart from the machine's own cluster on 5432: ``pg1``
starts as the primary (``initdb``), ``pg2`` is cloned from it with ``pg_basebackup -R`` and
follows it by streaming replication. Failover is by hand, as a centre without a failover
manager does it: the primary dies (``kill``: an immediate shutdown, every session cut like a
crash), then ``promote`` makes the replica the primary (``pg_ctl promote``). siaga112 connects
to both with one multi-host URL (``url()``, ``target_session_attrs=read-write``) and finds the
new primary by itself.

PostgreSQL refuses to run as root, so the clusters run as the ``postgres`` user. Their data
directories cannot live under the state directory when that is in root's home (mode 0700, out
of reach of ``postgres``): they go under the postgres user's home instead,
``/var/lib/postgresql/siaga112-pgha-<id>``, one pair per state directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from siaga112.config import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = (5441, 5442)
NODES = ("pg1", "pg2")
_PG_USER = "postgres"
_TIMEOUT_S = 60
# The postgres user's home (Debian): reachable by the server, writable by no one else.
_PG_HOME = Path("/var/lib/postgresql")


class PgHaError(RuntimeError):
    """The sandbox's primary/replica pair could not be started, changed or stopped."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    port: int
    data_dir: Path
    exists: bool
    running: bool
    role: str  # primary, replica, or "" when not known (not created, or stopped)

    def describe(self) -> str:
        if not self.exists:
            return f"{self.name} {DEFAULT_HOST}:{self.port}: not created"
        state = "running" if self.running else "stopped"
        return f"{self.name} {DEFAULT_HOST}:{self.port}: {state}, {self.role or 'role unknown'}"


@dataclass(frozen=True, slots=True)
class PgHa:
    """The pair: where its data lives and its ports (``ports[i]`` is ``NODES[i]``'s)."""

    base: Path
    ports: tuple[int, int] = DEFAULT_PORTS
    host: str = DEFAULT_HOST

    def data_dir(self, node: str) -> Path:
        return self.base / node

    def port(self, node: str) -> int:
        return self.ports[NODES.index(node)]

    def log_file(self, node: str) -> Path:
        return self.base / f"{node}.log"

    def url(self, database: str = "siaga112", *, driver: str = "postgresql+asyncpg") -> str:
        """The multi-host URL siaga112 is given: the primary is whichever accepts writes."""
        hosts = ",".join(f"{self.host}:{p}" for p in self.ports)
        return f"{driver}://{_PG_USER}@{hosts}/{database}?target_session_attrs=read-write"


def for_settings(settings: Settings, ports: tuple[int, int] = DEFAULT_PORTS) -> PgHa:
    """The pair of this state directory (its data outside root's home, see the module doc)."""
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:10]
    return PgHa(base=_PG_HOME / f"siaga112-pgha-{digest}", ports=ports)


def bin_dir() -> Path:
    """Debian's newest PostgreSQL server binaries."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise PgHaError(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql (scripts/bootstrap.sh does)"
        )
    return found[-1].parent


def _as_postgres(args: list[str], *, timeout: float = _TIMEOUT_S) -> str:
    """Run a PostgreSQL tool as the postgres user (root may not run a server)."""
    cmd = ["runuser", "-u", _PG_USER, "--", *args] if os.geteuid() == 0 else args
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired as exc:
        raise PgHaError(f"{Path(args[0]).name} did not finish in {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise PgHaError(
            f"{Path(args[0]).name} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-600:]}"
        )
    return done.stdout


def _ensure_base(pair: PgHa) -> None:
    pw = pwd.getpwnam(_PG_USER)
    pair.base.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(pair.base, pw.pw_uid, pw.pw_gid)


def _pid(pair: PgHa, node: str) -> int | None:
    """The postmaster's pid when it is running."""
    try:
        pid = int((pair.data_dir(node) / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _role(pair: PgHa, node: str) -> str:
    """From the control file, without a connection: a replica stays in archive recovery."""
    try:
        text = _as_postgres([str(bin_dir() / "pg_controldata"), str(pair.data_dir(node))])
    except PgHaError:
        return ""
    for line in text.splitlines():
        if line.startswith("Database cluster state:"):
            state = line.split(":", 1)[1].strip()
            if "recovery" in state:
                return "replica"
            if state == "in production":
                return "primary"
            # Shut down: a replica keeps its standby.signal.
            if (pair.data_dir(node) / "standby.signal").exists():
                return "replica"
            return "primary"
    return ""


def node_status(pair: PgHa, node: str) -> NodeStatus:
    exists = (pair.data_dir(node) / "PG_VERSION").exists()
    return NodeStatus(
        name=node,
        port=pair.port(node),
        data_dir=pair.data_dir(node),
        exists=exists,
        running=_pid(pair, node) is not None,
        role=_role(pair, node) if exists else "",
    )


def status(pair: PgHa) -> list[NodeStatus]:
    return [node_status(pair, n) for n in NODES]


def _start(pair: PgHa, node: str) -> None:
    if _pid(pair, node) is not None:
        return
    _as_postgres(
        [
            str(bin_dir() / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(_TIMEOUT_S),
            "-D",
            str(pair.data_dir(node)),
            "-l",
            str(pair.log_file(node)),
            "-o",
            f"-p {pair.port(node)}",
        ],
        timeout=_TIMEOUT_S + 5,
    )


def _init_primary(pair: PgHa, node: str) -> None:
    data = pair.data_dir(node)
    _as_postgres(
        [
            str(bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            _PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        ]
    )
    # Loopback only; the sockets beside the data (the system's socket directory belongs to the
    # machine's own cluster). Trust on loopback: a sandbox, never a centre (docs/operations.md).
    settings = (
        "\n# siaga112 pgha sandbox\n"
        f"listen_addresses = '{pair.host}'\n"
        f"unix_socket_directories = '{pair.base}'\n"
        "wal_level = replica\n"
        "max_wal_senders = 5\n"
        "wal_keep_size = '256MB'\n"
        "hot_standby = on\n"
    )
    _append_as_postgres(data / "postgresql.conf", settings)


def _append_as_postgres(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(_PG_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _clone_replica(pair: PgHa, source: str, node: str) -> None:
    _as_postgres(
        [
            str(bin_dir() / "pg_basebackup"),
            "-h",
            pair.host,
            "-p",
            str(pair.port(source)),
            "-U",
            _PG_USER,
            "-D",
            str(pair.data_dir(node)),
            "-R",  # standby.signal and primary_conninfo: it follows the source at once
            "-X",
            "stream",
            "-c",
            "fast",
        ]
    )


def up(pair: PgHa) -> list[NodeStatus]:
    """Start the pair: create the primary and clone the replica on first use, else start what
    exists. Refuses to start two primaries (after a promotion, the old primary has to be
    wiped or rewound before it may follow: ``down --wipe``)."""
    _ensure_base(pair)
    first, second = NODES
    have = {n: (pair.data_dir(n) / "PG_VERSION").exists() for n in NODES}
    if not have[first] and not have[second]:
        _init_primary(pair, first)
    elif have[first] and have[second]:
        roles = {n: _role(pair, n) for n in NODES}
        if roles[first] == roles[second] == "primary":
            raise PgHaError(
                "both clusters are primaries (the replica was promoted): starting both would "
                "split the writes; `siaga112 pgha down --wipe` and start again"
            )
    primaries = [n for n in NODES if have[n] and _role(pair, n) == "primary"] or [first]
    primary = primaries[0]
    _start(pair, primary)
    for node in NODES:
        if node == primary:
            continue
        if not (pair.data_dir(node) / "PG_VERSION").exists():
            _clone_replica(pair, primary, node)
        _start(pair, node)
    return status(pair)


def kill(pair: PgHa, node: str) -> None:
    """The node dies as in a crash: an immediate shutdown, every session cut, no checkpoint."""
    if _pid(pair, node) is None:
        return
    _as_postgres(
        [str(bin_dir() / "pg_ctl"), "stop", "-m", "immediate", "-D", str(pair.data_dir(node))]
    )


def promote(pair: PgHa, node: str | None = None) -> str:
    """Make the (named, or the running) replica the primary; returns its name."""
    candidates = [node] if node else [n for n in NODES if _pid(pair, n) is not None]
    for name in candidates:
        if _pid(pair, name) is not None and _role(pair, name) == "replica":
            _as_postgres(
                [str(bin_dir() / "pg_ctl"), "promote", "-w", "-D", str(pair.data_dir(name))]
            )
            return name
    raise PgHaError("no running replica to promote")


def rejoin(pair: PgHa, node: str) -> None:
    """The old primary back as a replica of the new one: stopped, its data replaced by a fresh
    ``pg_basebackup -R`` from the running primary (``pg_rewind`` would save the copy on a large
    database), started. Never while it is the only primary."""
    others = [n for n in NODES if n != node]
    if not any(_pid(pair, n) is not None and _role(pair, n) == "primary" for n in others):
        raise PgHaError(f"no other running primary to rejoin {node} to")
    kill(pair, node)
    shutil.rmtree(pair.data_dir(node), ignore_errors=True)
    up(pair)


def wait_writable(pair: PgHa, node: str, *, timeout: float = 30.0) -> None:
    """Until the node answers as a primary (after ``promote``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid(pair, node) is not None and _role(pair, node) == "primary":
            return
        time.sleep(0.2)
    raise PgHaError(f"{node} did not become a primary within {timeout:.0f} s")


def down(pair: PgHa, *, wipe: bool = False) -> None:
    """Stop both clusters (fast shutdown); ``wipe`` then removes their data."""
    for node in NODES:
        if _pid(pair, node) is not None:
            _as_postgres(
                [
                    str(bin_dir() / "pg_ctl"),
                    "stop",
                    "-w",
                    "-m",
                    "fast",
                    "-D",
                    str(pair.data_dir(node)),
                ]
            )
    if wipe and pair.base.exists():
        if any(_pid(pair, n) is not None for n in NODES):
            raise PgHaError("a cluster is still running; not removing its data")
        shutil.rmtree(pair.base)


@contextlib.contextmanager
def running(pair: PgHa) -> Iterator[PgHa]:
    """The pair started fresh and removed again afterwards (tests, drills)."""
    down(pair, wipe=True)
    up(pair)
    try:
        yield pair
    finally:
        down(pair, wipe=True)
