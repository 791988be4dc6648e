"""SIPp as caller and operator phone against the real Asterisk sandbox: used by the tests,
`siaga112 demo call` and the benchmarks. Every wait is bounded.

Typical use in a conftest (session scope)::

    reason = pbx_unavailable_reason()
    if reason: pytest.skip(reason)
    settings = Settings()
    ensure_pbx(settings)
    with SippOperator(settings, "6001") as op:
        result = run_caller(settings, "caller-112.xml", hold_ms=3000)
        assert result.ok and op.alive()

Callers send from 127.0.0.2 (the simulated carrier, ``pbx.carrier_addresses``); operators
register from 127.0.0.1 (DESIGN.md section 3).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from siaga112.config import Settings
from siaga112_sandbox import pbx

SIP_CONF = Path(__file__).resolve().parents[2] / "sip-conf"
CARRIER_IP = "127.0.0.2"
OPERATOR_IP = "127.0.0.1"
# The P-Access-Network-Info caller-112.xml sends unless told otherwise (``-key pani``): an LTE
# cell of Telkomsel (510-10), TAC 0x00A1, ECI 0xB2C3D4E.
DEFAULT_PANI = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"


def pbx_unavailable_reason() -> str | None:
    """Why the real-PBX tests cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "the Asterisk sandbox needs root"
    for tool in ("sipp", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def ensure_pbx(settings: Settings) -> pbx.PbxStatus:
    """Start the sandbox unless it already runs (then only the status is returned)."""
    current = pbx.status(settings)
    if current.running:
        return current
    return pbx.up(settings)


@dataclass(frozen=True, slots=True)
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.successful > 0


def _stat(output: str, label: str) -> int:
    # Final screen: "  Successful call        |        0                  |        1  "
    found = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(found[-1]) if found else 0


def _sip_target(settings: Settings) -> str:
    return f"{settings.pbx.sip_bind}:{settings.pbx.sip_port}"


def registrar_targets(settings: Settings) -> list[str]:
    """Where an operator phone registers: the one node's address, or with `pbx.nodes` every
    node's (docs/telephony.md, "Operators are on every node": the proxy does not forward
    REGISTER, each phone registers with each node)."""
    if not settings.pbx.nodes:
        return [_sip_target(settings)]
    return [f"{n.sip_address}:{settings.pbx.sip_port}" for n in settings.pbx_nodes]


def run_caller(
    settings: Settings,
    scenario: str = "caller-112.xml",
    *,
    number: str = "112",
    caller: str | None = "+6281234567890",
    hold_ms: int = 2000,
    calls: int = 1,
    rate: float | None = None,
    source_ip: str = CARRIER_IP,
    timeout: float = 60.0,
    extra_args: tuple[str, ...] = (),
    cwd: Path | None = None,
    keys: Mapping[str, str] | None = None,
    target: str | None = None,
) -> SippResult:
    """Place ``calls`` calls with a caller scenario from ``sip-conf/`` and wait for SIPp to end.

    ``caller`` is passed as ``-key caller`` (omit it, None, for caller-112-anonymous.xml).
    ``keys``: more ``-key name value`` pairs for the scenario's ``[name]`` fields; ``pani``
    (caller-112.xml's P-Access-Network-Info) is :data:`DEFAULT_PANI` unless given here.
    ``cwd``: where SIPp runs, and so where its trace files (``-trace_rtt`` ...) land.
    ``target``: ``host:port`` to call (default: the sandbox's PJSIP address), e.g. a proxy.
    """
    cmd = [
        "sipp",
        target or _sip_target(settings),
        "-sf",
        str(SIP_CONF / scenario),
        "-i",
        source_ip,
        "-p",
        "0",
        "-s",
        number,
        "-d",
        str(hold_ms),
        "-m",
        str(calls),
        "-aa",
        "-nostdin",
        "-timeout",
        f"{max(1, int(timeout))}s",
        "-timeout_error",
    ]
    if caller is not None:
        cmd += ["-key", "caller", caller]
    for name, value in ({"pani": DEFAULT_PANI} | dict(keys or {})).items():
        cmd += ["-key", name, value]
    if rate is not None:
        cmd += ["-r", str(rate)]
    cmd += list(extra_args)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout + 10, check=False, cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return SippResult(returncode=-1, successful=0, failed=calls, output=out)
    output = proc.stdout + proc.stderr
    return SippResult(
        returncode=proc.returncode,
        successful=_stat(output, "Successful call"),
        failed=_stat(output, "Failed call"),
        output=output,
    )


def register_operator(
    settings: Settings,
    extension: str,
    *,
    port: int,
    expires: int = 3600,
    timeout: float = 10.0,
    password: str | None = None,
    target: str | None = None,
) -> SippResult:
    """REGISTER (or with ``expires=0`` unregister) an operator from OPERATOR_IP:port with the
    registrar ``target`` (host:port; default the one node's SIP address).

    Without ``password``: a demo operator's, from the per-machine credentials file."""
    if password is None:
        password = pbx.operator_credentials(settings)[extension]
    cmd = [
        "sipp",
        target or _sip_target(settings),
        "-sf",
        str(SIP_CONF / "operator-register.xml"),
        "-i",
        OPERATOR_IP,
        "-p",
        str(port),
        "-s",
        extension,
        "-au",
        extension,
        "-ap",
        password,
        "-key",
        "expires",
        str(expires),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        f"{max(1, int(timeout))}s",
        "-timeout_error",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5, check=False)
    except subprocess.TimeoutExpired:
        return SippResult(returncode=-1, successful=0, failed=1, output="timeout")
    output = proc.stdout + proc.stderr
    return SippResult(
        proc.returncode, _stat(output, "Successful call"), _stat(output, "Failed call"), output
    )


def _udp_bound(ip: str, port: int) -> bool:
    want = f"{''.join(reversed([f'{int(p):02X}' for p in ip.split('.')]))}:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == want for line in lines)


class SippOperator:
    """A registered operator phone that answers every call (SIPp ``operator-uas.xml``, or
    another phone scenario from ``sip-conf/``, e.g. ``operator-noanswer.xml``).

    Registers first (separate SIPp runs on the same port: with every node when `pbx.nodes` is
    set, so that calls through any node ring it), then keeps a UAS running until ``stop()``,
    which also unregisters so later calls do not ring a dead port.
    """

    def __init__(
        self,
        settings: Settings,
        extension: str = "6001",
        *,
        port: int | None = None,
        ring_ms: int = 200,
        log_dir: Path | None = None,
        password: str | None = None,
        scenario: str = "operator-uas.xml",
    ) -> None:
        self.settings = settings
        self.scenario = scenario
        self.extension = extension
        self.password = password  # None: a demo operator's
        self.port = port if port is not None else 5070 + int(extension[-2:])
        self.ring_ms = ring_ms
        self.log_dir = log_dir if log_dir is not None else settings.state_dir / "sipp"
        self.registrars = registrar_targets(settings)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 15.0) -> None:
        if self._proc is not None:
            return
        for registrar in self.registrars:
            reg = register_operator(
                self.settings,
                self.extension,
                port=self.port,
                timeout=timeout,
                password=self.password,
                target=registrar,
            )
            if not reg.ok:
                raise RuntimeError(
                    f"operator {self.extension} failed to register with {registrar}:\n{reg.output}"
                )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"operator-{self.extension}.log").open("wb")
        self._proc = subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(SIP_CONF / self.scenario),
                "-i",
                OPERATOR_IP,
                "-p",
                str(self.port),
                "-d",
                str(self.ring_ms),
                "-aa",
                "-nostdin",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_dir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _udp_bound(OPERATOR_IP, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop(unregister=False)
                raise RuntimeError(f"operator UAS {self.extension} did not start")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, *, unregister: bool = True, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if unregister:
            for registrar in self.registrars:
                register_operator(
                    self.settings,
                    self.extension,
                    port=self.port,
                    expires=0,
                    timeout=timeout,
                    password=self.password,
                    target=registrar,
                )

    def __enter__(self) -> SippOperator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
