"""Outbound requests to addresses someone else chose (agency webhooks, by-reference caller
locations): which destinations are allowed, and a transport that connects only to the address
that was checked.

A URL is refused when it is not https (unless plain http is allowed), or when its host is, or
resolves to, an address that is loopback, link-local, private, unspecified, multicast,
reserved, or one of the service's own addresses -- unless an admin allows that address's
network explicitly (``SIAGA112_OUTBOUND__ALLOWED_NETWORKS``). Names are resolved once; the
connection goes to the checked address while the request keeps the name in Host and in TLS
SNI (certificate checks stay against the name), so a DNS answer that changes between check
and connect (DNS rebinding) reaches nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    from siaga112.config import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Who may read /metrics, the API's and the workers' alike (SIAGA112_API__METRICS_ALLOWED_NETWORKS).
METRICS_FORBIDDEN = "metrics are served only to SIAGA112_API__METRICS_ALLOWED_NETWORKS"


def address_in(host: str, networks: Iterable[str]) -> bool:
    """Whether the literal address `host` lies in one of `networks` (False for a name). An
    IPv4 peer of a dual-stack listener (``::ffff:a.b.c.d``) counts as its IPv4 address."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


class UnsafeDestination(ValueError):
    """A URL the policy refuses; `reason` is a short stable word, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    url: str
    scheme: str
    host: str
    port: int
    address: str


def _unmapped(addr: IpAddress) -> IpAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allowed_networks: tuple[IpNetwork, ...] = ()
    allow_http: bool = False
    own_addresses: frozenset[IpAddress] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls, *, allowed_networks: Sequence[str], allow_http: bool, own_hosts: Iterable[str] = ()
    ) -> OutboundPolicy:
        own: set[IpAddress] = set()
        for host in own_hosts:
            try:
                own.add(_unmapped(ipaddress.ip_address(host)))
            except ValueError:
                continue
        return cls(
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks),
            allow_http=allow_http,
            own_addresses=frozenset(own),
        )

    def address_refusal(self, address: str) -> str | None:
        """Why `address` may not be reached, or None when it may."""
        addr = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
        if any(addr in net for net in self.allowed_networks):
            return None
        if addr.is_unspecified:
            return "unspecified"
        if addr.is_loopback:
            return "loopback"
        if addr.is_link_local:
            return "link_local"
        if addr.is_multicast:
            return "multicast"
        if addr.is_private or addr.is_reserved or not addr.is_global:
            return "private"
        if addr in self.own_addresses:
            # A public address of this deployment (its API, PBX or database).
            return "own_address"
        return None

    def check_url(self, url: str) -> tuple[str, str, int]:
        """Scheme, host and port of an acceptable URL (no name resolution)."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeDestination("invalid_url", "not a valid URL") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeDestination("invalid_url", "not an http(s) URL with a host")
        if scheme == "http" and not self.allow_http:
            raise UnsafeDestination(
                "http_not_allowed", "plain http is not allowed (SIAGA112_OUTBOUND__ALLOW_HTTP)"
            )
        if parts.username is not None or parts.password is not None:
            raise UnsafeDestination("invalid_url", "credentials in the URL are not allowed")
        host = parts.hostname.lower().rstrip(".")
        # RFC 6761: every *.localhost name is loopback, whatever a resolver says.
        local = host == "localhost" or host.endswith(".localhost")
        host_check = "127.0.0.1" if local else host
        try:
            ipaddress.ip_address(host_check.split("%", 1)[0])
        except ValueError:
            pass
        else:
            reason = self.address_refusal(host_check)
            if reason is not None:
                raise UnsafeDestination(reason, f"the URL's address is not allowed ({reason})")
        return scheme, host, port or (443 if scheme == "https" else 80)

    async def resolve(self, url: str) -> CheckedTarget:
        """Resolve the URL's host once; every address it has must be allowed (a name that
        mixes a public and an internal address is refused), the first is the one used."""
        scheme, host, port = self.check_url(url)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            return CheckedTarget(url=url, scheme=scheme, host=host, port=port, address=host)
        if host == "localhost" or host.endswith(".localhost"):
            # Checked as 127.0.0.1 above (refused unless loopback is allowed).
            return CheckedTarget(url=url, scheme=scheme, host=host, port=port, address="127.0.0.1")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise UnsafeDestination("unresolvable", f"{host} does not resolve") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise UnsafeDestination("unresolvable", f"{host} does not resolve")
        for address in addresses:
            reason = self.address_refusal(address)
            if reason is not None:
                raise UnsafeDestination(reason, f"{host} resolves to a refused address ({reason})")
        return CheckedTarget(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects every TCP connection to one checked address, whatever host is asked for; TLS
    (started later by httpcore with the URL's host as SNI) and Host are left to the name."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._backend = httpcore.AnyIOBackend()

    # The signatures are httpcore's (ASYNC109: its timeout parameter is the interface).
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_tcp(
            self._address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose connections all go to `address` (see the module text)."""

    def __init__(self, address: str) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx has no public hook for the network backend; its pool is rebuilt with the same
        # TLS context and the pinned backend (httpcore's public API).
        ssl_context = self._pool._ssl_context
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=_PinnedBackend(address), retries=0
        )


def pinned_client(target: CheckedTarget, **kwargs: Any) -> httpx.AsyncClient:
    """A client for one request to a checked target: no redirects, no proxy from the
    environment, connections only to the checked address."""
    return httpx.AsyncClient(
        transport=PinnedTransport(target.address),
        follow_redirects=False,
        trust_env=False,
        **kwargs,
    )


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The policy of a deployment: its allowed networks and http allowance, and its own
    addresses (listeners, database) refused unless allowed."""
    own = list(settings.own_hosts())
    with contextlib.suppress(OSError):
        # Best effort: the machine's own name's addresses (from /etc/hosts, usually).
        own.extend(socket.gethostbyname_ex(socket.gethostname())[2])
    return OutboundPolicy.build(
        allowed_networks=settings.outbound.allowed_networks,
        allow_http=settings.outbound.allow_http,
        own_hosts=own,
    )
