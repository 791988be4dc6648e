"""Response headers for the console's pages and files: a strict Content-Security-Policy (no
inline script or style, nothing from another origin unless a tile server is configured), no
framing, no MIME sniffing, no referrer leaving the centre."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/console"
STATIC_PREFIX = "/console/static/"


def content_security_policy(tile_url: str | None) -> str:
    img = "'self' data:"
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        host = parts.netloc.replace("a.", "*.", 1) if "{s}" in tile_url else parts.netloc
        img += f" {parts.scheme}://{host}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {img}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ConsoleHeadersMiddleware:
    """Adds the headers to every response under /console (pure ASGI: the event stream and
    other /v1 responses pass untouched)."""

    def __init__(self, app: ASGIApp, *, tile_url: str | None) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy(tile_url).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        extra = self.headers
        if str(scope.get("path", "")).startswith(STATIC_PREFIX):
            # Kept five minutes without asking again: a screen pop (a new address fragment)
            # must not send the browser back for the icon, style sheet and scripts.
            extra = [*extra, (b"cache-control", b"public, max-age=300")]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ConsoleCompressionMiddleware:
    """Gzip for the console's pages and files only (Leaflet, the basemap): the first load of
    a screen stays small on a centre's slow uplink. /v1 and its event stream are untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
