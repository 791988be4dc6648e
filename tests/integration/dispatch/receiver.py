"""A real HTTP receiver on 127.0.0.1 for webhook tests: an agency system that can fail (500),
hang past the sender's timeout, be stopped and started again, and that checks signatures the
way an agency would (HMAC-SHA256 over the raw body, computed here, not with siaga112's code)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from dataclasses import dataclass, field

# The receiver's freshness window for X-Siaga112-Timestamp.
FRESHNESS_S = 300


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    answered: int | None = None  # None: the sender gave up first (hang)

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=dict)  # path -> HMAC secret
    # What to do with the next requests, in order: "500", "hang"; afterwards "ok" (200).
    plan: list[str] = field(default_factory=list)
    # While set, every request hangs (a receiver stuck for as long as a test wants).
    hang_all: bool = False
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._server.wait_closed()
            self._server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.answered is not None and 200 <= r.answered < 300]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            secret = self.secrets.get(path, "")
            # As an agency would: HMAC over "<timestamp>." + body, a fresh timestamp, and
            # de-duplication on Idempotency-Key (checked by the tests from `received`).
            stamp = headers.get("x-siaga112-timestamp", "")
            signed = stamp.encode() + b"." + body
            expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= FRESHNESS_S
            signature_ok = fresh and hmac.compare_digest(
                expected, headers.get("x-siaga112-signature", "")
            )
            entry = Received(path, headers, body, signature_ok)
            self.received.append(entry)
            self.arrived.set()
            mode = "hang" if self.hang_all else (self.plan.pop(0) if self.plan else "ok")
            if mode == "hang":
                await asyncio.sleep(3600)
            status = 500 if mode == "500" else 200
            entry.answered = status
            reason = "OK" if status == 200 else "Internal Server Error"
            head_out = f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close"
            writer.write(head_out.encode() + b"\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)
