"""Dereferencing a by-reference SIP Geolocation (RFC 6442 §4.1, RFC 6753): one bounded GET.

A carrier may send ``Geolocation: <https://lis.example/loc/abc>`` instead of a PIDF-LO body.
siaga112 keeps the URI on the call; only when ``SIAGA112_LOCATIONS__FETCH_GEOLOCATION_BY_REFERENCE``
is on does it fetch the document, and then with every limit a request decided by the network
needs: the host on ``geolocation_reference_hosts`` (an empty list allows any host), and the
outbound policy of :mod:`siaga112.net` (https only unless plain http is allowed, no internal
address unless its network is allowed, the connection pinned to the checked address), no
redirects, no proxy from the environment, a time limit for the whole exchange, at most
:data:`~siaga112.locations.pidf.MAX_PIDF_CHARS` bytes of body, a 200 answer. The body goes to
:func:`~siaga112.locations.pidf.parse_pidf_lo`.

Nothing here raises for what the network or the server does: the result says what came back or
why nothing did (:class:`FetchedLocation`).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from siaga112.locations.pidf import (
    MAX_PIDF_CHARS,
    GeolocationRef,
    ParsedLocation,
    parse_geolocation_header,
    parse_pidf_lo,
)
from siaga112.net import CheckedTarget, OutboundPolicy, PinnedTransport, UnsafeDestination

__all__ = [
    "FetchedLocation",
    "fetch_location_reference",
    "fetchable_reference",
    "host_allowed",
]

log = logging.getLogger(__name__)

USER_AGENT = "siaga112-location-dereference/1"
ACCEPT = "application/pidf+xml, application/xml;q=0.5, text/xml;q=0.5"


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedLocation:
    uri: str
    location: ParsedLocation | None = None
    """The parsed document; None when nothing usable came back (``error`` says why)."""
    error: str | None = None
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.location is not None and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "status": self.status,
            "error": self.error,
            "parsed": self.location.as_dict() if self.location else None,
        }


def fetchable_reference(header: str | None) -> GeolocationRef | None:
    """The first http(s) by-reference URI of a Geolocation header, None when it has none."""
    if not header:
        return None
    return next((r for r in parse_geolocation_header(header) if r.fetchable), None)


def _host(uri: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower().rstrip(".")


def host_allowed(uri: str, allowed_hosts: Iterable[str]) -> bool:
    """http(s) with a host on the list (case-insensitive, exact; an empty list allows any)."""
    host = _host(uri)
    if host is None:
        return False
    allowed = {h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()}
    return not allowed or host in allowed


async def fetch_location_reference(
    uri: str,
    *,
    allowed_hosts: Sequence[str],
    outbound: OutboundPolicy,
    timeout_s: float,
    max_bytes: int = MAX_PIDF_CHARS,
) -> FetchedLocation:
    """GET one by-reference location URI within the limits above and parse it as PIDF-LO.
    Never raises (except cancellation)."""
    if _host(uri) is None:
        return FetchedLocation(uri=uri, error="not an http(s) URI with a host")
    if not host_allowed(uri, allowed_hosts):
        return FetchedLocation(uri=uri, error="host not allowed")
    try:
        async with asyncio.timeout(timeout_s):
            try:
                target = await outbound.resolve(uri)
            except UnsafeDestination as exc:
                return FetchedLocation(uri=uri, error=f"destination refused: {exc.reason}")
            return await _get(target, timeout_s=timeout_s, max_bytes=max_bytes)
    except TimeoutError:
        return FetchedLocation(uri=uri, error=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return FetchedLocation(uri=uri, error=f"request failed: {type(exc).__name__}")
    except Exception as exc:  # a bad server or URI must never take the location step down
        log.warning("fetching a location reference failed: %s", type(exc).__name__)
        return FetchedLocation(uri=uri, error=f"request failed: {type(exc).__name__}")


async def _get(target: CheckedTarget, *, timeout_s: float, max_bytes: int) -> FetchedLocation:
    uri = target.url
    async with (
        httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
            transport=PinnedTransport(target.address),
            headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
        ) as client,
        client.stream("GET", uri) as response,
    ):
        if response.status_code != 200:
            return FetchedLocation(
                uri=uri,
                status=response.status_code,
                error=f"HTTP {response.status_code}",
            )
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return FetchedLocation(uri=uri, status=200, error=f"body over {max_bytes} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                return FetchedLocation(uri=uri, status=200, error=f"body over {max_bytes} bytes")
    parsed = parse_pidf_lo(bytes(body))
    if parsed is None or not (parsed.has_coordinates or parsed.address):
        problems = "; ".join(parsed.problems) if parsed else ""
        return FetchedLocation(
            uri=uri,
            status=200,
            location=None,
            error=f"no PIDF-LO location in the answer{': ' + problems if problems else ''}",
        )
    return FetchedLocation(uri=uri, status=200, location=parsed)
