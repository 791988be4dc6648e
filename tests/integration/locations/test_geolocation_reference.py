"""A by-reference SIP Geolocation (``Geolocation: <http://...>``) dereferenced when configured:
against a real HTTP server on 127.0.0.1, with its limits (host list, no redirects, size, time)
and from the telephony runtime's location step, off by default."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.config import AmiSettings, OutboundSettings, Settings
from siaga112.locations.georef import fetch_location_reference, fetchable_reference, host_allowed
from siaga112.locations.models import Location
from siaga112.locations.pidf import MAX_PIDF_CHARS
from siaga112.metrics import Metrics
from siaga112.net import OutboundPolicy
from siaga112.runtime.telephony import Telephony
from tests.factories import call_facts
from tests.integration.locations.conftest import inline_tasks

Sessions = async_sessionmaker[AsyncSession]

PIDF = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
 xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml"
 xmlns:gs="http://www.opengis.net/pidflo/1.0" entity="sip:+6281234567890@carrier.invalid">
<dm:device id="handset"><gp:geopriv><gp:location-info>
<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.30001 106.90002</gml:pos>
<gs:radius uom="urn:ogc:def:uom:EPSG::9001">15</gs:radius></gs:Circle>
</gp:location-info><gp:usage-rules/><gp:method>gps</gp:method></gp:geopriv></dm:device>
</presence>"""


@dataclass
class LocationServer:
    port: int
    paths: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def lis() -> Iterator[LocationServer]:
    """A location server on 127.0.0.1 (what a carrier's LIS answers by reference)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == "/loc/redirect":
                self.send_response(302)
                self.send_header("Location", "/loc/ok")
                self.end_headers()
                return
            if self.path == "/loc/slow":
                time.sleep(1.5)
            if self.path == "/loc/missing":
                self.send_response(404)
                self.end_headers()
                return
            body = PIDF
            if self.path == "/loc/big":
                body = PIDF + b"<!--" + b"x" * MAX_PIDF_CHARS + b"-->"
            self.send_response(200)
            self.send_header("Content-Type", "application/pidf+xml")
            if self.path != "/loc/big":  # the big one streams without a length
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocationServer(port=server.server_address[1], paths=seen)
    finally:
        server.shutdown()
        server.server_close()


ALLOWED = ["127.0.0.1"]
# The location server listens on this host over plain http: allowed explicitly.
LOCAL = OutboundSettings(allowed_networks=["127.0.0.1/32"], allow_http=True)
POLICY = OutboundPolicy.build(allowed_networks=LOCAL.allowed_networks, allow_http=True)


async def test_allowed_host_is_fetched_and_parsed(lis: LocationServer) -> None:
    fetched = await fetch_location_reference(
        lis.url("/loc/ok"), allowed_hosts=ALLOWED, outbound=POLICY, timeout_s=2.0
    )
    assert fetched.ok, fetched.error
    assert fetched.location is not None
    loc = fetched.location
    assert (loc.lat, loc.lon, loc.radius_m, loc.method) == (-6.30001, 106.90002, 15.0, "gps")
    assert lis.paths == ["/loc/ok"]


async def test_host_not_on_the_list_is_refused_without_a_request(lis: LocationServer) -> None:
    fetched = await fetch_location_reference(
        lis.url("/loc/ok", host="localhost"), allowed_hosts=ALLOWED, outbound=POLICY, timeout_s=2.0
    )
    assert (fetched.ok, fetched.error) == (False, "host not allowed")
    assert lis.paths == []


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/loc/redirect", "HTTP 302"),
        ("/loc/missing", "HTTP 404"),
        ("/loc/big", f"body over {MAX_PIDF_CHARS} bytes"),
        ("/loc/slow", "no answer within 0.5 s"),
    ],
)
async def test_limits(lis: LocationServer, path: str, error: str) -> None:
    started = time.monotonic()
    fetched = await fetch_location_reference(
        lis.url(path), allowed_hosts=ALLOWED, outbound=POLICY, timeout_s=0.5
    )
    assert (fetched.ok, fetched.location, fetched.error) == (False, None, error)
    assert time.monotonic() - started < 1.4
    assert lis.paths == [path], "one request, no redirect followed"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://127.0.0.1/loc", "loopback"),
        ("https://[::1]/loc", "loopback"),
        ("https://localhost/loc", "loopback"),
        ("https://10.1.2.3/loc", "private"),
        ("https://169.254.169.254/latest/meta-data", "link_local"),
        ("https://0.0.0.0/loc", "unspecified"),
        ("https://[::ffff:127.0.0.1]/loc", "loopback"),
        ("http://lis.example.invalid/loc", "http_not_allowed"),
    ],
)
async def test_internal_or_plain_http_references_are_refused_by_default(
    uri: str, reason: str
) -> None:
    # Any host allowed (the empty list): the outbound policy alone decides.
    fetched = await fetch_location_reference(
        uri, allowed_hosts=[], outbound=OutboundPolicy(), timeout_s=1.0
    )
    assert (fetched.ok, fetched.error) == (False, f"destination refused: {reason}")


async def test_loopback_server_is_not_reached_unless_its_network_is_allowed(
    lis: LocationServer,
) -> None:
    strict_http = OutboundPolicy.build(allowed_networks=[], allow_http=True)
    fetched = await fetch_location_reference(
        lis.url("/loc/ok"), allowed_hosts=[], outbound=strict_http, timeout_s=1.0
    )
    assert fetched.error == "destination refused: loopback"
    assert lis.paths == []


def test_which_references_are_fetchable() -> None:
    ref = fetchable_reference("<cid:loc@x>, <https://lis.example/loc/1>")
    assert ref is not None
    assert ref.uri == "https://lis.example/loc/1"
    assert fetchable_reference("<cid:loc@x>") is None
    assert fetchable_reference("<sips:lis@example>") is None
    assert fetchable_reference(None) is None
    assert host_allowed("https://LIS.example./x", ["lis.example"])
    assert not host_allowed("https://lis.example.evil/x", ["lis.example"])
    assert not host_allowed("ftp://lis.example/x", [])
    assert host_allowed("https://any.example/x", [])


# -- from the telephony runtime's location step ------------------------------------------------


def _telephony(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path, *, fetch: bool
) -> Telephony:
    locations = settings.locations.model_copy(
        update={
            "fetch_geolocation_by_reference": fetch,
            "geolocation_reference_hosts": ALLOWED,
            "geolocation_fetch_timeout_s": 2.0,
            "derive_in": "inline",
        }
    )
    conf = settings.model_copy(
        update={
            "ami": AmiSettings(secret=SecretStr("test")),
            "state_dir": tmp_path,
            "locations": locations,
            "outbound": LOCAL,
        }
    )
    return Telephony(settings=conf, sessionmaker=sessionmaker, metrics=Metrics())


async def _call_with(tel: Telephony, sessionmaker: Sessions, uri: str) -> list[Location]:
    recorded = await tel._record_call(
        call_facts(f"ref-{uuid.uuid4().hex[:8]}", geolocation=f"<{uri}>"), datetime.now(UTC)
    )
    await asyncio.gather(*inline_tasks(tel))
    async with sessionmaker() as session:
        return list(
            await session.scalars(select(Location).where(Location.call_id == recorded.call_id))
        )


async def test_runtime_adds_the_fetched_location_to_the_call(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path, lis: LocationServer
) -> None:
    tel = _telephony(settings, sessionmaker, tmp_path, fetch=True)
    uri = lis.url("/loc/ok")
    locations = await _call_with(tel, sessionmaker, uri)
    assert [(loc.source, loc.lat, loc.lon, loc.radius_m) for loc in locations] == [
        ("pidf_lo", -6.30001, 106.90002, 15.0)
    ]
    assert locations[0].raw is not None
    assert locations[0].raw["fetched_from"] == uri
    assert locations[0].incident_id is not None
    assert tel.metrics.counters["location_references_fetched"] == 1


async def test_runtime_refuses_a_host_not_on_the_list(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path, lis: LocationServer
) -> None:
    tel = _telephony(settings, sessionmaker, tmp_path, fetch=True)
    locations = await _call_with(tel, sessionmaker, lis.url("/loc/ok", host="localhost"))
    assert locations == []
    assert lis.paths == []
    assert tel.metrics.counters["location_reference_failures"] == 1


async def test_runtime_fetches_nothing_by_default(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path, lis: LocationServer
) -> None:
    assert settings.locations.fetch_geolocation_by_reference is False
    tel = _telephony(settings, sessionmaker, tmp_path, fetch=False)
    assert await _call_with(tel, sessionmaker, lis.url("/loc/ok")) == []
    assert lis.paths == []


async def test_reference_of_a_call_deferred_by_the_backlog_is_fetched_by_the_sweep_once(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    lis: LocationServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("siaga112.locations.worker.BACKLOG", 0)
    tel = _telephony(settings, sessionmaker, tmp_path, fetch=True)
    uri = lis.url("/loc/ok")
    recorded = await tel._record_call(
        call_facts(f"ref-{uuid.uuid4().hex[:8]}", geolocation=f"<{uri}>"),
        datetime.now(UTC) - timedelta(minutes=2),
    )
    assert not inline_tasks(tel)
    assert lis.paths == []
    for _ in range(2):  # the second sweep finds the call done
        await tel._sweep_locations()
    async with sessionmaker() as session:
        locations = list(
            await session.scalars(select(Location).where(Location.call_id == recorded.call_id))
        )
    assert [(loc.source, loc.radius_m) for loc in locations] == [("pidf_lo", 15.0)]
    assert locations[0].raw is not None
    assert locations[0].raw["fetched_from"] == uri
    assert lis.paths == ["/loc/ok"]


async def test_failed_fetch_is_tried_once_not_by_every_sweep(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    lis: LocationServer,
) -> None:
    tel = _telephony(settings, sessionmaker, tmp_path, fetch=True)
    await tel._record_call(
        call_facts(f"ref-{uuid.uuid4().hex[:8]}", geolocation=f"<{lis.url('/loc/missing')}>"),
        datetime.now(UTC) - timedelta(minutes=2),
    )
    await asyncio.gather(*inline_tasks(tel))
    await tel._sweep_locations()
    assert lis.paths == ["/loc/missing"]
    assert tel.metrics.counters["location_reference_failures"] == 1
