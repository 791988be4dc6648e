"""The local Asterisk 22 sandbox for development and tests: build its root, start and stop it.
Never part of a production install (the service image leaves this package out).

Asterisk 22 comes from Debian sid and runs in its own root filesystem (DESIGN.md section 3):
``mmdebstrap`` builds it once under the cache directory, and Asterisk runs as the ``asterisk``
user via ``chroot`` inside a private mount namespace, so the ``/dev`` and ``/proc`` mounts it
needs vanish with the process and the host never sees them. Its configuration is rendered by
`siaga112.pbxconf.render`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from siaga112.config import RECORDINGS_SUBDIR, Settings
from siaga112.pbxconf.prompts import PromptError, write_sounds
from siaga112.pbxconf.render import (
    BENCH_AGI_NUMBER,
    BENCH_ANSWER_CONTEXT,
    BENCH_PLAIN_NUMBER,
    BENCH_QUEUE,
    REMOVED_FILES,
    SECRET_FILES,
    PbxError,
    operator_credentials,
    prompt_sounds_dir,
    render_config,
)

__all__ = [
    "BENCH_AGI_NUMBER",
    "BENCH_ANSWER_CONTEXT",
    "BENCH_PLAIN_NUMBER",
    "BENCH_QUEUE",
    "PbxError",
    "PbxStatus",
    "cli",
    "down",
    "ensure_root",
    "log_file",
    "operator_credentials",
    "prepare_root",
    "reload_dialplan",
    "status",
    "up",
]

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 20.0
_CLI_TIMEOUT_S = 15.0


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


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "asterisk.pid"


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "asterisk.log"


def _credentials_file(settings: Settings) -> Path:
    return settings.state_dir / "operators.json"


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


def _write_files(root: Path, rendered: Mapping[str, str], gid: int) -> None:
    etc = root / "etc" / "asterisk"
    for name, content in rendered.items():
        target = root / "etc" / "hosts" if name == "hosts" else etc / name
        mode = 0o640 if name in SECRET_FILES else 0o644
        tmp = target.with_name(f".{target.name}.siaga112")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.chown(tmp, 0, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, target)


def reload_dialplan(settings: Settings) -> None:
    """Render and load only the dialplan (``dialplan reload``) into the running sandbox: unlike
    ``up`` (``core reload``), it leaves the AMI sessions, registrations and calls alone."""
    _require_root()
    root = settings.pbx_root
    rendered = render_config(settings)
    _write_files(root, {"extensions.conf": rendered["extensions.conf"]}, _asterisk_ids(root)[1])
    cli(settings, "dialplan reload")


def prepare_root(settings: Settings, rendered: Mapping[str, str]) -> None:
    """Asterisk's directories in the root, the ``rendered`` files (``/etc/asterisk`` and the
    root's ``/etc/hosts``) and the prompts."""
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
    for name in REMOVED_FILES:
        (etc / name).unlink(missing_ok=True)
    _write_files(root, rendered, gid)
    # What callers hear: built from the texts (or the centre's recordings) on every start, so
    # a changed text or recording is what the next call plays. Read by Asterisk at each play.
    try:
        write_sounds(prompt_sounds_dir(root), prompts_dir=settings.pbx.prompts_dir)
    except PromptError as exc:
        raise PbxError(f"the prompts could not be built: {exc}") from exc


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
    prepare_root(settings, rendered)
    if _read_pid(settings) is not None or _responds(root):
        cli(settings, "core reload")
        return status(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_file(settings)
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
