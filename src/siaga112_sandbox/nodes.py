"""Several Asterisk nodes in the sandbox, from the one shared root filesystem, and Kamailio in
front of them: the high-availability tier of the development sandbox (never installed).

Each node of ``pbx.nodes`` runs ``asterisk -C`` with a configuration rendered for it
(``systemname``, its SIP and AMI address) and directories of its own (config, run, spool, log,
lib, cache) under ``/var/lib/siaga112-nodes/<name>`` inside the root; all nodes use the same
ports on their own loopback address. Kamailio (Debian's package; the dispatcher module is in
the base package) spreads the carrier's INVITEs over the nodes and probes them with OPTIONS.

Every process started here dies with the process that started it, however that ends: each runs
in a PID namespace of its own whose first process is a shell (never Asterisk, which changes its
user and so loses the parent-death signal) killed by ``unshare --kill-child`` when ``unshare``
ends, and ``unshare`` itself ends with its parent (``setpriv --pdeathsig``). The kernel ends
everything in a PID namespace when its first process ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from siaga112.config import RECORDINGS_SUBDIR, PbxNode, Settings
from siaga112.pbxconf.render import (
    REMOVED_FILES,
    SECRET_FILES,
    PbxError,
    node_directories,
    render_config,
)
from siaga112_sandbox import pbx

__all__ = ["KAMAILIO_PACKAGE", "NodeSandbox", "Proxy", "node_prefix"]

# Debian's package with Kamailio and its dispatcher module (scripts/bootstrap.sh, HA tier).
KAMAILIO_PACKAGE = "kamailio"
_START_TIMEOUT_S = 60.0
# Read by each node from its own etc, taken from the root's Debian install (see _prepare).
STOCK_FILES = ("indications.conf",)


def node_prefix(node: PbxNode) -> str:
    """The node's directories as Asterisk sees them, inside the root."""
    return f"/var/lib/siaga112-nodes/{node.name}"


def _dying_with_parent(argv: list[str]) -> list[str]:
    """``argv`` in a PID namespace of its own, ended with this process (module docstring)."""
    return [
        "setpriv", "--pdeathsig", "KILL",
        "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--propagation",
        "private", *argv,
    ]  # fmt: skip


@dataclass
class NodeSandbox:
    """One Asterisk node of the sandbox (`pbx.nodes`), started by this process."""

    settings: Settings
    node: PbxNode
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        return self.settings.pbx_root

    @property
    def conf(self) -> str:
        return f"{node_prefix(self.node)}/etc/asterisk.conf"

    @property
    def log_path(self) -> Path:
        return self.settings.state_dir / f"asterisk-{self.node.name}.log"

    def _prepare(self) -> None:
        root = pbx.ensure_root(self.settings)
        uid, gid = _asterisk_ids(root)
        base = root / node_prefix(self.node).lstrip("/")
        for rel in (
            "etc", "log", "log/cdr-custom", "spool", f"spool/monitor/{RECORDINGS_SUBDIR}",
            "lib", "lib/keys", "cache", "run",
        ):  # fmt: skip
            d = base / rel
            d.mkdir(parents=True, exist_ok=True)
            if rel != "etc":
                os.chown(d, uid, gid)
        # The root's shared files (hosts, prompts, its own directories) as the one-node sandbox
        # writes them; each node's configuration then goes to its own etc.
        rendered = render_config(
            self.settings, node=self.node, directories=node_directories(node_prefix(self.node))
        )
        pbx.prepare_root(self.settings, {"hosts": rendered["hosts"]})
        for name in REMOVED_FILES:
            (base / "etc" / name).unlink(missing_ok=True)
        for name, content in rendered.items():
            if name == "hosts":
                continue
            target = base / "etc" / name
            mode = 0o640 if name in SECRET_FILES else 0o644
            tmp = target.with_name(f".{name}.siaga112")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as fh:
                fh.write(content)
            os.chown(tmp, 0, gid)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        # Debian's stock files a node reads that siaga112 does not render: the one-node sandbox
        # has them in the root's /etc/asterisk. Without indications.conf the `id` tone zone is
        # unknown and callers queued on a node hear no ringing.
        for name in STOCK_FILES:
            stock = root / "etc/asterisk" / name
            if name not in rendered and stock.is_file():
                shutil.copyfile(stock, base / "etc" / name)

    def cli(self, command: str, *, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.root), "asterisk", "-C", self.conf, "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *, timeout: float = _START_TIMEOUT_S) -> None:
        if self.running:
            return
        self._prepare()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        # The shell stays the namespace's first process (no exec): see the module docstring.
        script = (
            'mount --bind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
            'chroot "$1" asterisk -C "$2" -f -U asterisk -G asterisk & wait'
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                _dying_with_parent(["sh", "-c", script, "sh", str(self.root), self.conf]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise PbxError(
                    f"Asterisk node {self.node.name} exited at start; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise PbxError(f"Asterisk node {self.node.name} did not boot within {timeout} s")
            with contextlib.suppress(subprocess.TimeoutExpired):
                done = self.cli("core waitfullybooted", timeout=10)
                if done.returncode == 0 and "fully booted" in done.stdout:
                    return
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """The node dies at once, as a host that loses power (its calls are cut)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if not self.running:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cli("core stop now", timeout=10)
        assert self.process is not None
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


def _asterisk_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == "asterisk":
            return int(parts[2]), int(parts[3])
    raise PbxError(f"no asterisk user in {root}/etc/passwd")


# ---------------------------------------------------------------------------------------------
# Kamailio


def kamailio_config(
    *,
    carrier_side: str,
    nodes: list[PbxNode],
    sip_port: int,
    dispatcher_list: Path,
    probe_s: int = 1,
) -> str:
    """kamailio.cfg: new INVITEs from the carrier go to a node of set 1 (round robin), failing
    over to the next on a timeout or 5xx; in-dialog requests follow the Record-Route; OPTIONS
    probe the nodes every ``probe_s`` and a node that stops answering is skipped from its first
    missed probe until it answers again."""
    del nodes  # listed in the dispatcher file
    return f"""#!KAMAILIO
# siaga112 sandbox: rendered by siaga112_sandbox.nodes.kamailio_config.
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
auto_aliases=no
listen=udp:{carrier_side}:{sip_port}
dns=no
rev_dns=no
use_dns_cache=no

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "ctl.so"
loadmodule "dispatcher.so"

modparam("ctl", "binrpc", "unix:{dispatcher_list.parent}/kamailio.ctl")
# A probe unanswered within this is a miss (tm's final-response timer).
modparam("tm", "fr_timer", 1000)
modparam("tm", "fr_inv_timer", 30000)
modparam("rr", "enable_full_lr", 1)
modparam("dispatcher", "list_file", "{dispatcher_list}")
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:proxy@{carrier_side}")
modparam("dispatcher", "ds_ping_interval", {probe_s})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
# Not all of class 4: tm's own 408 for an unanswered probe is one, and would keep a dead node
# in. 404: a node that has no user for the probe's URI still answers.
modparam("dispatcher", "ds_ping_reply_codes", "class=2;code=404")
modparam("dispatcher", "flags", 2)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (t_check_trans()) exit;
    if (is_method("INVITE")) record_route();
    # 4: round robin over the nodes that answer their probes.
    if (!ds_select_dst("1", "4")) {{
        xlog("L_ERR", "no Asterisk node answers: $rm from $si refused\\n");
        sl_send_reply("503", "No node");
        exit;
    }}
    t_on_failure("NEXT_NODE");
    if (!t_relay()) sl_reply_error();
}}

failure_route[NEXT_NODE] {{
    if (t_is_canceled()) exit;
    if (t_check_status("5[0-9][0-9]") || (t_branch_timeout() && !t_branch_replied())) {{
        ds_mark_dst("ip");
        if (ds_next_dst()) {{
            t_on_failure("NEXT_NODE");
            t_relay();
            exit;
        }}
    }}
}}
"""


@dataclass
class Proxy:
    """Kamailio in front of the sandbox's nodes, started by this process."""

    settings: Settings
    address: str
    nodes: list[PbxNode]
    probe_s: int = 1
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def directory(self) -> Path:
        return self.settings.state_dir / "kamailio"

    @property
    def log_path(self) -> Path:
        return self.settings.state_dir / "kamailio.log"

    def start(self, *, timeout: float = 15.0) -> None:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(binary).exists():
            raise PbxError(
                f"kamailio is not installed (`apt-get install {KAMAILIO_PACKAGE}`; "
                "scripts/bootstrap.sh does it with WANT_HA=1)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        port = self.settings.pbx.sip_port
        listing = self.directory / "dispatcher.list"
        listing.write_text(
            "# set destination flags priority attributes\n"
            + "".join(f"1 sip:{n.sip_address}:{port} 0 0 name={n.name}\n" for n in self.nodes)
        )
        cfg = self.directory / "kamailio.cfg"
        cfg.write_text(
            kamailio_config(
                carrier_side=self.address,
                nodes=self.nodes,
                sip_port=port,
                dispatcher_list=listing,
                probe_s=self.probe_s,
            )
        )
        check = subprocess.run(
            [binary, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise PbxError(f"kamailio.cfg does not parse:\n{check.stderr[-2000:]}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                # No pid file: in its own PID namespace Kamailio is pid 1, and a file left by a
                # killed run would name a live process (the host's init) next time.
                _dying_with_parent([binary, "-DD", "-E", "-f", str(cfg)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while not pbx_udp_bound(self.address, port):
            if self.process.poll() is not None:
                raise PbxError(f"kamailio exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise PbxError(f"kamailio did not listen within {timeout} s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def pbx_udp_bound(ip: str, port: int) -> bool:
    """Something listens on UDP ``ip:port`` (from /proc/net/udp)."""
    want = f"{_hex_ip(ip)}:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == want for line in lines if len(line.split()) > 1)


def _hex_ip(ip: str) -> str:
    return "".join(f"{int(p):02X}" for p in reversed(ip.split(".")))
