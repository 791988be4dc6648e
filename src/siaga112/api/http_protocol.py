"""The HTTP server's own answers in the API's error shape.

Requests too broken to reach the application (a garbled request line or header, a bad
Content-Length, Content-Length together with chunked encoding) are answered by uvicorn itself,
as plain text. This protocol answers them as JSON with a stable `code`, like every other error.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_BODY = json.dumps(
    {"code": "malformed_http", "message": "malformed HTTP request", "details": []}
).encode()


class JsonErrorH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        # uvicorn's `msg` repeats the parser's view of the input: not echoed.
        event = h11.Response(
            status_code=400,
            headers=[
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BODY)).encode()),
                (b"connection", b"close"),
            ],
            reason=b"Bad Request",
        )
        self.transport.write(self.conn.send(event) or b"")
        self.transport.write(self.conn.send(h11.Data(data=_BODY)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()
