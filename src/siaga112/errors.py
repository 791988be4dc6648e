"""Domain errors with stable codes, and the one place that turns them into HTTP responses."""

from __future__ import annotations

import logging
import math
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class InvalidTransition(DomainError):
    status_code = 409
    code = "invalid_transition"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class TooManyAuthFailures(DomainError):
    """Too many failed authentications from this source address lately."""

    status_code = 429
    code = "too_many_auth_failures"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CsrfFailed(DomainError):
    """A console (cookie) request that changes something without its session's CSRF token."""

    status_code = 403
    code = "csrf_failed"


class InvalidRequest(DomainError):
    status_code = 422
    code = "validation_error"


class DestinationRefused(DomainError):
    """An outbound URL (agency webhook) that siaga112 will not send to: internal address,
    plain http, or not a usable URL (details[0].reason says which)."""

    status_code = 422
    code = "destination_refused"


class CoordinatesRequired(DomainError):
    """Confirming a location makes it the point shown first and sent to agencies: one without
    coordinates (an address alone) is kept, but cannot be confirmed."""

    status_code = 422
    code = "coordinates_required"


class CallerIdUnavailable(DomainError):
    """Anonymous, restricted or SIM-less callers have no number to look up: their calls are
    never lumped together as if they were one caller."""

    status_code = 422
    code = "caller_id_unavailable"


class TelephonyUnavailable(DomainError):
    """Asterisk (AMI) is not reachable from this process, or refused the action."""

    status_code = 503
    code = "telephony_unavailable"


class EventStreamUnavailable(DomainError):
    """The live event stream cannot start now (the database is not reachable)."""

    status_code = 503
    code = "event_stream_unavailable"


class InvalidSignature(DomainError):
    """An AML message whose HMAC does not verify with any secret of an allowed sender."""

    status_code = 401
    code = "invalid_signature"


class Replayed(DomainError):
    """An AML message seen before, or signed outside the replay window."""

    status_code = 409
    code = "replayed"


class MalformedAml(DomainError):
    """An AML message that is signed correctly but does not parse or fails validation."""

    status_code = 422
    code = "malformed_aml"


class CallbackInProgress(DomainError):
    """Someone is already calling this number back (two operators never call one caller at
    once), or the operator already has a callback ringing."""

    status_code = 409
    code = "callback_in_progress"


class DispatchNotWaiting(DomainError):
    """A resend of a dispatch its agency has already acknowledged (or declined, or finished):
    only a dispatch still waiting for its acknowledgement can be sent again."""

    status_code = 409
    code = "dispatch_not_waiting"


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or []}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        return ".".join(parts)
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
        if isinstance(exc, TooManyAuthFailures):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details: list[dict[str, Any]] = []
        code = "validation_error"
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                code = "invalid_json"
            details.append(
                {
                    "field": _field_path(err.get("loc", ())),
                    "type": err.get("type"),
                    "message": err.get("msg"),
                }
            )
        message = "request body is not valid JSON" if code == "invalid_json" else "invalid request"
        return JSONResponse(error_body(code, message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, SQLAlchemyError):
            # The driver's message can quote values (a unique key's DETAIL, an out-of-range
            # argument): callers' numbers and locations. The error's types and where it was
            # raised, never its text.
            orig = getattr(exc, "orig", None)
            log.error(
                "unhandled database error %s%s on %s %s\n%s",
                type(exc).__name__,
                f" ({type(orig).__name__})" if orig is not None else "",
                request.method,
                request.url.path,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
        else:
            log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
