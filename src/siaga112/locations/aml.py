"""Advanced Mobile Location (AML) messages to typed values. Pure, no I/O; nothing here raises.

A handset that dials 112 sends its own location fix within seconds of dialling (DESIGN.md §5),
by SMS to the centre's short code or by HTTPS POST, and siaga112 receives both through systems
it trusts (an AML relay, the centre's SMS gateway) that sign what they forward.

**SMS, text** (ETSI TS 103 625; Android ELS "V1")::

    A"ML=1;lt=+54.76397;lg=-0.18305;rd=50;top=20130717141935;lc=90;pm=W;
    si=123456789012345;ei=1234567890123456;mcc=234;mnc=30;ml=128

=====  ================================================================================
key    meaning
=====  ================================================================================
A"ML   version; 1 is the one in use
lt/lg  latitude / longitude, degrees with sign (+00.00000 when there is no fix)
rd     radius in metres around lt/lg (``N``: no fix)
top    time of the fix, ``yyyyMMddHHmmss`` UTC
lc     confidence of the radius, percent
pm     positioning method: ``G`` GNSS, ``W`` Wi-Fi, ``C`` cell, ``N`` none (no fix)
si/ei  IMSI (often only the first six digits, rest zeros) / IMEI or IMEISV
mcc    network the handset is on; ``mnc`` likewise
ml     length of the whole message in characters, ``ml=...`` included: a truncated or
       altered message fails this check and is refused
=====  ================================================================================

Keys not listed are kept (``fields``) and ignored. Older Android phones send the same text as a
*data SMS*: the gateway forwards its user data base64-encoded (:func:`decode_data_sms`), with or
without the user data header (application port addressing), in 8-bit or GSM 7-bit packing.

**HTTPS** (Android ELS HTTP format, form-encoded): ``v=1&emergency_number=112&source=call&
time=<ms>&location_latitude=..&location_longitude=..&location_time=<ms>&location_accuracy=<m>&
location_confidence=<0..1>&location_source=gps|wifi|cell|fused|unknown&device_number=+62..&
device_imei=..&device_imsi=..&cell_network_mcc=..&...&hmac=<hex>``; every field is optional in
the format, so a message without a fix or a number is kept, only values that are present and
wrong refuse it.

**Signature**: the sender puts ``hmac=<HMAC-SHA256>`` last in the form body, computed over every
byte of the body before ``&hmac=`` with the sender's secret, hex (or base64) encoded
(:func:`split_signature`, :func:`verify_signature`). Signing the bytes as sent avoids any
question of how fields are ordered or percent-encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_AML_CHARS",
    "AmlMessage",
    "AmlResult",
    "decode_data_sms",
    "epoch_to_datetime",
    "parse_aml_https",
    "parse_aml_sms",
    "parse_form",
    "split_signature",
    "verify_signature",
]

MAX_AML_CHARS = 4000
MAX_FORM_FIELDS = 100
MAX_FIELD_CHARS = 500
SMS_PREFIX = 'A"ML='

SMS_METHODS = {"G": "gnss", "W": "wifi", "C": "cell", "N": "none"}
HTTPS_METHODS = {
    "gps": "gnss",
    "gnss": "gnss",
    "wifi": "wifi",
    "cell": "cell",
    "fused": "fused",
    "unknown": "unknown",
}

# 3GPP TS 23.038 basic character set (GSM 03.38), septet value -> character; ESC (0x1B) and
# the extension table do not occur in AML text, so they are left out.
_GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

_LAT = re.compile(r"[+-]?\d{1,2}(?:\.\d{1,10})?", re.ASCII)
_LON = re.compile(r"[+-]?\d{1,3}(?:\.\d{1,10})?", re.ASCII)
_DECIMAL = re.compile(r"[+-]?\d{1,12}(?:\.\d{1,10})?", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)
_HEX_SIG = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class AmlMessage:
    """One AML message, SMS or HTTPS, with what every field said. Any field may be None."""

    channel: str
    """``sms`` or ``https``."""
    version: str | None
    lat: float | None
    lon: float | None
    radius_m: float | None
    confidence: int | None
    """Percent."""
    observed_at: datetime | None
    """When the handset got the fix."""
    method: str | None
    """gnss, wifi, cell, fused, unknown, none."""
    number: str | None = None
    """The handset's number (HTTPS ``device_number``; for SMS the gateway gives the sender)."""
    imsi: str | None = None
    imei: str | None = None
    iccid: str | None = None
    network_mcc: str | None = None
    network_mnc: str | None = None
    home_mcc: str | None = None
    home_mnc: str | None = None
    emergency_number: str | None = None
    call_started_at: datetime | None = None
    altitude_m: float | None = None
    vertical_accuracy_m: float | None = None
    floor: str | None = None
    bearing_deg: float | None = None
    speed_mps: float | None = None
    device_model: str | None = None
    activation: str | None = None
    """HTTPS ``source``: what triggered the handset (call, sms)."""
    length_declared: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_fix(self) -> bool:
        return self.lat is not None and self.lon is not None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif name == "fields":
                value = dict(value)
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class AmlResult:
    """A parsed message, or why it was refused (``reason`` names the field in ``field``)."""

    message: AmlMessage | None
    reason: str | None = None
    field: str | None = None

    @property
    def ok(self) -> bool:
        return self.message is not None


def _fail(reason: str, field_name: str | None = None) -> AmlResult:
    return AmlResult(None, reason, field_name)


class _Invalid(Exception):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


# -- shared field checks ----------------------------------------------------------------------


def _printable(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    return "".join(ch for ch in value if ch.isprintable())[:limit]


def _coordinate(name: str, text: str, pattern: re.Pattern[str], limit: float) -> float:
    if not pattern.fullmatch(text):
        raise _Invalid(name, f"{name} {text[:30]!r} is not a coordinate")
    value = float(text)
    if not -limit <= value <= limit:
        raise _Invalid(name, f"{name} {value} out of range")
    return value


def _decimal(name: str, text: str, low: float, high: float) -> float:
    if not _DECIMAL.fullmatch(text):
        raise _Invalid(name, f"{name} {text[:30]!r} is not a number")
    value = float(text)
    if not math.isfinite(value) or not low <= value <= high:
        raise _Invalid(name, f"{name} {value} out of range {low}..{high}")
    return value


def _digits(name: str, text: str, low: int, high: int) -> str:
    if not _DIGITS.fullmatch(text) or not low <= len(text) <= high:
        raise _Invalid(name, f"{name} must be {low} to {high} digits")
    return text


def epoch_to_datetime(text: str) -> datetime | None:
    """Unix time in milliseconds (or seconds, for values that are too small to be ms) as UTC;
    None for junk or times before 2000 / after 2100."""
    if not _DIGITS.fullmatch(text.strip()) or len(text.strip()) > 16:
        return None
    value = int(text.strip())
    seconds = value / 1000 if value > 100_000_000_000 else float(value)
    if not 946_684_800 <= seconds <= 4_102_444_800:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _epoch(name: str, text: str) -> datetime:
    value = epoch_to_datetime(text)
    if value is None:
        raise _Invalid(name, f"{name} {text[:20]!r} is not a Unix time in milliseconds")
    return value


# -- SMS ----------------------------------------------------------------------------------------


def _top(text: str) -> datetime:
    if not _DIGITS.fullmatch(text) or len(text) != 14:
        raise _Invalid("top", "top must be yyyyMMddHHmmss")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise _Invalid("top", f"top {text!r} is not a date") from exc


def parse_aml_sms(text: str) -> AmlResult:
    """An AML text SMS (ETSI TS 103 625); never raises."""
    try:
        return _parse_sms(text)
    except _Invalid as exc:
        return _fail(exc.reason, exc.field)
    except Exception:  # never raise, whatever the input
        return _fail("unreadable AML SMS")


def _parse_sms(text: str) -> AmlResult:
    if not isinstance(text, str):
        return _fail("not text")
    # Gateways add line ends; they are not part of the message the handset counted.
    text = text.strip("\r\n\t ")
    if len(text) > MAX_AML_CHARS:
        return _fail(f"over {MAX_AML_CHARS} characters")
    if not text.startswith(SMS_PREFIX):
        return _fail('not an AML message (does not start with A"ML=)', 'A"ML')
    values: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            return _fail(f"field {part[:30]!r} is not key=value")
        if key in values:
            return _fail(f"field {key[:20]!r} given twice", key[:20])
        values[key] = value
    version = values['A"ML']
    if version != "1":
        return _fail(f"AML version {version[:10]!r} is not supported (1 is)", 'A"ML')
    for required in ("lt", "lg", "rd", "top", "pm", "ml"):
        if required not in values:
            return _fail(f"field {required} is missing", required)
    declared = int(_digits("ml", values["ml"], 1, 4))
    if declared != len(text):
        return _fail(
            f"ml says {declared} characters, the message has {len(text)} (truncated or altered)",
            "ml",
        )
    pm = values["pm"].upper()
    if pm not in SMS_METHODS:
        return _fail(f"pm {values['pm'][:5]!r} is not G, W, C or N", "pm")
    lat = _coordinate("lt", values["lt"], _LAT, 90.0)
    lon = _coordinate("lg", values["lg"], _LON, 180.0)
    radius: float | None = None
    if values["rd"].upper() != "N":
        radius = _decimal("rd", values["rd"], 0, 1_000_000)
    confidence: int | None = None
    if "lc" in values and values["lc"].upper() != "N":
        confidence = round(_decimal("lc", values["lc"], 0, 100))
    observed = _top(values["top"])
    imsi = _digits("si", values["si"], 1, 15) if values.get("si", "N") != "N" else None
    imei = _digits("ei", values["ei"], 1, 16) if values.get("ei", "N") != "N" else None
    mcc = _digits("mcc", values["mcc"], 3, 3) if "mcc" in values else None
    mnc = _digits("mnc", values["mnc"], 2, 3) if "mnc" in values else None
    no_fix = pm == "N"
    message = AmlMessage(
        channel="sms",
        version=version,
        lat=None if no_fix else lat,
        lon=None if no_fix else lon,
        radius_m=None if no_fix else radius,
        confidence=None if no_fix else confidence,
        observed_at=observed,
        method=SMS_METHODS[pm],
        imsi=imsi,
        imei=imei,
        network_mcc=mcc,
        network_mnc=mnc,
        length_declared=declared,
        fields={_printable(k, 40): _printable(v, 100) for k, v in values.items()},
    )
    return AmlResult(message)


def _unpack_gsm7(data: bytes, skip_septets: int = 0) -> str:
    septets: list[int] = []
    acc = bits = 0
    for byte in data:
        acc |= byte << bits
        bits += 8
        while bits >= 7:
            septets.append(acc & 0x7F)
            acc >>= 7
            bits -= 7
    chars = [_GSM7[s] for s in septets[skip_septets:]]
    return "".join(chars)


def decode_data_sms(data_b64: str, *, udhi: bool | None = None) -> str | None:
    """The text of an AML data SMS whose user data arrives base64-encoded; None when it does
    not decode to an AML message. ``udhi``: the gateway says a user data header is present
    (None: look for one). Tries 8-bit, then GSM 7-bit packing. Never raises."""
    try:
        return _decode_data_sms(data_b64, udhi)
    except Exception:
        return None


def _decode_data_sms(data_b64: str, udhi: bool | None) -> str | None:
    if not isinstance(data_b64, str) or len(data_b64) > 2 * MAX_AML_CHARS:
        return None
    compact = "".join(data_b64.split())
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        try:
            data = base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            return None
    if not data:
        return None
    header_len = 0
    looks_like_udh = (
        len(data) > 3 and data[0] + 1 < len(data) and data[1] in (0x04, 0x05, 0x00, 0x08)
    )
    if udhi or (udhi is None and looks_like_udh and not data.startswith(b'A"ML')):
        header_len = data[0] + 1
    candidates: list[str] = []
    payload = data[header_len:]
    candidates.append(payload.decode("latin-1"))
    # 7-bit packing: the header and its fill bits take whole septets at the start.
    candidates.append(_unpack_gsm7(data, math.ceil(header_len * 8 / 7)))
    for text in candidates:
        text = text.rstrip("\x00\r\n")
        if text.startswith(SMS_PREFIX):
            return text
    return None


# -- HTTPS ------------------------------------------------------------------------------------


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORM_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def parse_form(body: bytes) -> tuple[dict[str, str] | None, str | None]:
    """A form-encoded body as a dict; (None, reason) for non-UTF-8, malformed or repeated
    fields. Never raises."""
    try:
        text = body.decode("utf-8")
        # parse_qsl keeps a bad escape ("%zz") as it is and decodes "%00" to NUL: both are
        # refused here, as is any other control character once decoded.
        if _BAD_ESCAPE.search(text):
            return None, "not a form-encoded body: invalid percent escape"
        pairs = urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not a form-encoded body: {str(exc)[:80]}"
    except Exception:
        return None, "not a form-encoded body"
    out: dict[str, str] = {}
    for key, value in pairs:
        if _FORM_CONTROL.search(key) or _FORM_CONTROL.search(value):
            return None, f"field {key[:30]!r} holds a control character"
        if key in out:
            return None, f"field {key[:30]!r} given twice"
        out[key] = value
    return out, None


def _opt(fields: Mapping[str, str], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_aml_https(fields: Mapping[str, str]) -> AmlResult:
    """An AML/ELS HTTPS message from its form fields (``hmac`` already removed); never raises.
    Every field is optional, as in the format; a field that is present must be valid."""
    try:
        return _parse_https(fields)
    except _Invalid as exc:
        return _fail(exc.reason, exc.field)
    except Exception:
        return _fail("unreadable AML HTTPS message")


def _parse_https(fields: Mapping[str, str]) -> AmlResult:
    for key, value in fields.items():
        if len(value) > MAX_FIELD_CHARS:
            return _fail(f"field {key[:30]!r} over {MAX_FIELD_CHARS} characters", key[:30])
    version = _opt(fields, "v")
    if version is not None and version != "1":
        return _fail(f"version {version[:10]!r} is not supported (1 is)", "v")
    lat_text, lon_text = _opt(fields, "location_latitude"), _opt(fields, "location_longitude")
    if (lat_text is None) != (lon_text is None):
        return _fail("latitude and longitude go together", "location_latitude")
    lat = lon = None
    if lat_text is not None and lon_text is not None:
        lat = _decimal("location_latitude", lat_text, -90, 90)
        lon = _decimal("location_longitude", lon_text, -180, 180)

    def number(name: str, low: float, high: float) -> float | None:
        text = _opt(fields, name)
        return None if text is None else _decimal(name, text, low, high)

    def when(name: str) -> datetime | None:
        text = _opt(fields, name)
        return None if text is None else _epoch(name, text)

    def digits(name: str, low: int, high: int) -> str | None:
        text = _opt(fields, name)
        return None if text is None else _digits(name, text, low, high)

    confidence_value = number("location_confidence", 0, 100)
    confidence = None
    if confidence_value is not None:
        # ELS sends a fraction (0.6827); a percent (68) is accepted too.
        percent = confidence_value * 100 if confidence_value <= 1 else confidence_value
        confidence = round(percent)
    source = _opt(fields, "location_source")
    method = None
    if source is not None:
        method = HTTPS_METHODS.get(source.lower(), _printable(source.lower(), 30))
    device_number = _opt(fields, "device_number")
    if device_number is not None and not re.fullmatch(r"\+?[0-9 ()\-.]{3,32}", device_number):
        return _fail("device_number is not a phone number", "device_number")
    message = AmlMessage(
        channel="https",
        version=version,
        lat=lat,
        lon=lon,
        radius_m=number("location_accuracy", 0, 1_000_000) if lat is not None else None,
        confidence=confidence if lat is not None else None,
        observed_at=when("location_time"),
        method=method if lat is not None else (method or "none"),
        number=device_number,
        imsi=digits("device_imsi", 1, 15),
        imei=digits("device_imei", 1, 16),
        iccid=digits("device_iccid", 1, 22),
        network_mcc=digits("cell_network_mcc", 3, 3),
        network_mnc=digits("cell_network_mnc", 2, 3),
        home_mcc=digits("cell_home_mcc", 3, 3),
        home_mnc=digits("cell_home_mnc", 2, 3),
        emergency_number=digits("emergency_number", 2, 10),
        call_started_at=when("time"),
        altitude_m=number("location_altitude", -20_000, 100_000),
        vertical_accuracy_m=number("location_vertical_accuracy", 0, 100_000),
        floor=_printable(v, 20) if (v := _opt(fields, "location_floor")) else None,
        bearing_deg=number("location_bearing", 0, 360),
        speed_mps=number("location_speed", 0, 2000),
        device_model=_printable(v, 100) if (v := _opt(fields, "device_model")) else None,
        activation=_printable(v, 20) if (v := _opt(fields, "source")) else None,
        fields={_printable(k, 60): _printable(v, 200) for k, v in fields.items()},
    )
    return AmlResult(message)


# -- signature --------------------------------------------------------------------------------

_SIGNATURE_FIELD = b"&hmac="


def split_signature(body: bytes) -> tuple[bytes, str] | None:
    """(signed bytes, signature) of a body ending in ``&hmac=<signature>``; None when the body
    has no signature there."""
    at = body.rfind(_SIGNATURE_FIELD)
    if at <= 0:
        return None
    raw = body[at + len(_SIGNATURE_FIELD) :]
    if b"&" in raw or len(raw) > 200:
        return None
    try:
        signature = urllib.parse.unquote_plus(raw.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    return body[:at], signature.strip()


def _signature_bytes(signature: str) -> bytes | None:
    if _HEX_SIG.fullmatch(signature):
        return bytes.fromhex(signature)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            value = decode(signature + "=" * (-len(signature) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(value) == 32:
            return value
    return None


def verify_signature(signed: bytes, signature: str, secrets: Iterable[bytes]) -> bool:
    """True when ``signature`` is HMAC-SHA256(secret, signed) for one of ``secrets``. Every
    secret is tried, in constant time each, so timing says nothing about which one failed."""
    given = _signature_bytes(signature)
    if given is None:
        return False
    ok = False
    for secret in secrets:
        expected = hmac.new(secret, signed, hashlib.sha256).digest()
        ok = hmac.compare_digest(expected, given) or ok
    return ok
