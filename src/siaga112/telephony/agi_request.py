"""Turn a FastAGI request for an incoming emergency call into an :class:`IncomingCall` value.

Pure parsing, no sockets: the input is the mapping of ``agi_*`` variables that panoramisk's
``fast_agi`` hands over as ``request.headers`` (an ``OrderedDict`` built from the ``key: value``
lines Asterisk sends before the blank line; values are ``str``, empty values arrive as ``''`` and a
line without ``": "`` is dropped, so any key may be missing).

Dialplan contract (``pbxconf/templates/extensions.conf``, `siaga112.telephony.contract`)::

    AGI(agi://host:4573/incoming, EXTEN, b64(PAI), b64(PANI), b64(Geolocation),
        ${CALLERID(pres)}, b64(${GEOLOC_PROFILE(effective_location)}), ${GEOLOC_PROFILE(method)})

which arrive as ``agi_arg_1`` .. ``agi_arg_7``. Every one of them may be missing, empty or garbage:
the call is already answered and queued whatever happens here, so parsing never raises and never
refuses; what could not be decoded is described in :attr:`IncomingCall.problems`.

``linkedid``: Asterisk's ``res_agi.c`` ``setup_env()`` sends no ``agi_linkedid`` (it sends
request, channel, language, type, uniqueid, version, callerid, calleridname, callingpres,
callingani2, callington, callingtns, dnid, rdnis, context, extension, priority, enhanced,
accountcode, threadid and the ``agi_arg_N``). The caller leg from the carrier is the first channel
of its call, and Asterisk's Linkedid is "the Uniqueid of the oldest channel associated with this
channel", so the caller leg's linkedid equals its uniqueid; that is the fallback used. An
``agi_linkedid`` key, should a future Asterisk or dialplan send one, is preferred.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from siaga112.callers.numbers import NO_NUMBER_WORDS, is_short_code, normalise_indonesian_number
from siaga112.telephony.ids import is_node_name, node_of_id

__all__ = [
    "IncomingCall",
    "parse_incoming_call",
    "parse_pai",
]

# Longest text kept per field; longer is cut and reported. Values this long are junk or abuse,
# and they must not make the call's row fail to insert (limits match siaga112.calls.models).
MAX_SHORT_CHARS = 200
_LIMITS: dict[str, int] = {
    "agi_uniqueid": 64,
    "agi_linkedid": 64,
    "agi_callerid": 64,
    "agi_arg_1": 32,
    "agi_extension": 32,
    "agi_dnid": 32,
    "agi_arg_5": 40,
    "agi_arg_7": 40,
    "agi_arg_8": 31,  # ${SYSTEMNAME}: the node
    "agi_arg_2": 1000,  # P-Asserted-Identity
    "agi_arg_3": 1000,  # P-Access-Network-Info
    "agi_arg_4": 2000,  # Geolocation
    "agi_arg_6": 2000,  # effective location
}
MAX_HEADER_CHARS = max(_LIMITS.values())

# ${CALLERID(pres)} names (Asterisk callerid.c), and the numeric agi_callingpres they stand for.
_PRESENTATION_BY_CODE: dict[int, str] = {
    0x00: "allowed_not_screened",
    0x01: "allowed_passed_screen",
    0x02: "allowed_failed_screen",
    0x03: "allowed",
    0x20: "prohib_not_screened",
    0x21: "prohib_passed_screen",
    0x22: "prohib_failed_screen",
    0x23: "prohib",
    0x43: "unavailable",
}
_PRESENTATION_NAMES = frozenset(_PRESENTATION_BY_CODE.values())

_VISUAL_SEPARATORS = re.compile(r"[\s\-.()/]")
_PHONE = re.compile(r"\+?[0-9]{2,20}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INT = re.compile(r"[0-9]{1,4}", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall:
    """What the FastAGI request tells about one incoming emergency call (the caller leg)."""

    uniqueid: str
    """Asterisk Uniqueid of the caller channel; '' only if Asterisk did not send it."""
    linkedid: str
    """Linkedid of the call; equals ``uniqueid`` for the carrier leg (see module docstring)."""
    channel: str
    dialled_number: str
    """agi_arg_1, else agi_extension, else agi_dnid."""
    caller_number: str
    """agi_callerid as received (cleaned of control characters); '' when Asterisk said unknown."""
    caller_name: str
    caller_e164: str | None
    """caller_number normalised to +62... (or kept as a short code) when that is unambiguous."""
    presentation: str
    """${CALLERID(pres)} name (``allowed_not_screened``, ``prohib``, ``unavailable``...) or ''."""
    presentation_restricted: bool
    """The caller asked for privacy (prohib*) or the network had no number (unavailable)."""
    caller_id_available: bool
    """A usable number the caller lets us see: False for anonymous/unknown/junk numbers and for
    restricted or unavailable presentation. 112 may override privacy: see ``callback_number``."""
    asserted_number: str | None
    """Number from P-Asserted-Identity (tel: URI preferred over sip:), visual separators removed."""
    asserted_name: str | None
    asserted_e164: str | None
    asserted_restricted: bool
    """The asserted number was delivered under privacy (presentation restricted/unavailable)."""
    pai: str
    pani: str
    geolocation: str
    """The raw SIP Geolocation header (e.g. ``<cid:...>`` or a by-reference URI)."""
    geoloc_effective: str
    """${GEOLOC_PROFILE(effective_location)}, e.g. ``shape="Circle",crs="2d",pos="lat lon",...``."""
    geoloc_method: str
    node: str | None
    """The PBX node that took the call: agi_arg_8 (``${SYSTEMNAME}``), else the systemname the
    Uniqueid starts with; None for a node without one."""
    problems: tuple[str, ...]
    """Notes on what was missing or could not be decoded; empty when all went well."""

    @property
    def callback_number(self) -> str | None:
        """Best number to call back, privacy notwithstanding (emergency override).

        The network-asserted identity is preferred: the From header is caller-controlled.
        """
        for candidate in (self.asserted_e164, self.caller_e164):
            if candidate is not None and candidate.startswith("+"):
                return candidate
        if self.asserted_number is not None and _usable_number(self.asserted_number) is not None:
            return self.asserted_number
        if _usable_number(self.caller_number) is not None:
            return self.caller_number
        return None


def parse_incoming_call(env: Mapping[str, object]) -> IncomingCall:
    """Build an :class:`IncomingCall` from the ``agi_*`` variables; never raises."""
    problems: list[str] = []

    def text(key: str) -> str:
        return _text(env.get(key), key, _LIMITS.get(key, MAX_SHORT_CHARS), problems)

    uniqueid = text("agi_uniqueid")
    if not uniqueid:
        problems.append("agi_uniqueid missing")
    linkedid = text("agi_linkedid") or uniqueid
    channel = text("agi_channel")

    if not any(isinstance(k, str) and k.startswith("agi_arg_") for k in env):
        problems.append("no agi_arg_N: the dialplan did not pass the AGI arguments")

    dialled = _digits_or_raw(text("agi_arg_1"))
    if not dialled:
        fallback = text("agi_extension") or _unless_unknown(text("agi_dnid"))
        if fallback:
            problems.append("agi_arg_1 (dialled number) empty; used agi_extension/agi_dnid")
        else:
            problems.append("dialled number missing")
        dialled = fallback

    pai = _b64_arg(env, "agi_arg_2", "P-Asserted-Identity", problems)
    pani = _b64_arg(env, "agi_arg_3", "P-Access-Network-Info", problems)
    geolocation = _b64_arg(env, "agi_arg_4", "Geolocation", problems)
    geoloc_effective = _b64_arg(env, "agi_arg_6", "GEOLOC_PROFILE(effective_location)", problems)
    geoloc_method = text("agi_arg_7")

    node = _node(text("agi_arg_8"), uniqueid, problems)

    presentation = _presentation(text("agi_arg_5"), text("agi_callingpres"), problems)
    restricted = presentation.startswith("prohib") or presentation == "unavailable"

    caller_number = _unless_unknown(text("agi_callerid"))
    caller_name = _unless_unknown(text("agi_calleridname"))
    usable = _usable_number(caller_number)
    if usable is None and is_short_code(caller_number):
        problems.append(f"caller ID {caller_number!r} is a short code, not the caller's number")
    elif usable is None and caller_number.strip().lower() not in NO_NUMBER_WORDS:
        problems.append(f"caller ID {caller_number!r} is not a phone number")
    caller_e164 = normalise_indonesian_number(usable) if usable is not None else None

    asserted_number: str | None = None
    asserted_name: str | None = None
    if pai:
        asserted_number, asserted_name = parse_pai(pai)
        if asserted_number is None:
            problems.append("P-Asserted-Identity carries no phone number")
    asserted_e164 = (
        normalise_indonesian_number(asserted_number) if asserted_number is not None else None
    )

    return IncomingCall(
        uniqueid=uniqueid,
        linkedid=linkedid,
        channel=channel,
        dialled_number=dialled,
        caller_number=caller_number,
        caller_name=caller_name,
        caller_e164=caller_e164,
        presentation=presentation,
        presentation_restricted=restricted,
        caller_id_available=usable is not None and not restricted,
        asserted_number=asserted_number,
        asserted_name=asserted_name,
        asserted_e164=asserted_e164,
        asserted_restricted=asserted_number is not None and restricted,
        pai=pai,
        pani=pani,
        geolocation=geolocation,
        geoloc_effective=geoloc_effective,
        geoloc_method=geoloc_method,
        node=node,
        problems=tuple(problems),
    )


def parse_pai(value: str) -> tuple[str | None, str | None]:
    """Return (number, display name) from a P-Asserted-Identity header value; never raises.

    Accepts ``<sip:+62812...@host;user=phone>``, ``<tel:+62812...>``, ``"Name" <sip:...>``,
    bare ``sip:``/``tel:`` URIs and the two-identity form (RFC 3325 allows one sip and one tel,
    comma-separated); the tel: number is preferred, being the number by definition.
    """
    best: tuple[str | None, str | None] = (None, None)
    best_is_tel = False
    fallback_name: str | None = None
    for part in _split_name_addrs(value):
        name, uri = _name_and_uri(part)
        fallback_name = fallback_name or name
        scheme, number = _number_from_uri(uri)
        if number is None:
            continue
        if best[0] is None or (scheme == "tel" and not best_is_tel):
            best = (number, name)
            best_is_tel = scheme == "tel"
    number, name = best
    return number, name or fallback_name


# --- helpers ---------------------------------------------------------------------------------


def _node(arg: str, uniqueid: str, problems: list[str]) -> str | None:
    from_id = node_of_id(uniqueid)
    if not arg:
        return from_id
    if not is_node_name(arg):
        problems.append(f"agi_arg_8 (node) {arg!r} is not a node name; ignored")
        return from_id
    if from_id is not None and from_id != arg:
        # The id is Asterisk's own making; an argument can be mistyped in a dialplan.
        problems.append(f"agi_arg_8 (node) {arg!r} differs from the Uniqueid's {from_id!r}")
        return from_id
    return arg


def _text(raw: object, key: str, limit: int, problems: list[str]) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        problems.append(f"{key} is not text")
        return ""
    return _clean(raw, key, limit, problems)


def _clean(value: str, what: str, limit: int, problems: list[str]) -> str:
    # NUL and lone surrogates cannot be stored in PostgreSQL text; other controls are noise.
    value = value.encode("utf-8", "replace").decode("utf-8")
    value = _CONTROL.sub("", value).strip()
    if len(value) > limit:
        problems.append(f"{what} longer than {limit} characters; cut")
        value = value[:limit]
    return value


def _b64_arg(env: Mapping[str, object], key: str, what: str, problems: list[str]) -> str:
    raw = env.get(key)
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        problems.append(f"{what} ({key}) is not text")
        return ""
    encoded = raw.strip()
    if not encoded:
        return ""
    # Base64 is 4/3 of the text; refuse to decode something far bigger than we would keep.
    if len(encoded) > MAX_HEADER_CHARS * 2:
        problems.append(f"{what} ({key}) too long to decode")
        return ""
    try:
        data = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{what} ({key}) is not valid base64")
        return ""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{what} ({key}) is not UTF-8; undecodable bytes replaced")
        decoded = data.decode("utf-8", "replace")
    return _clean(decoded, what, _LIMITS.get(key, MAX_HEADER_CHARS), problems)


def _presentation(name: str, code: str, problems: list[str]) -> str:
    lowered = name.lower()
    if lowered in _PRESENTATION_NAMES:
        return lowered
    if name:
        problems.append(f"unknown caller presentation {name!r} (agi_arg_5)")
    # ${CALLERID(pres)} missing: agi_callingpres is the same information as a number.
    if _INT.fullmatch(code):
        by_code = _PRESENTATION_BY_CODE.get(int(code))
        if by_code is not None:
            return by_code
        # Unknown screening bits: the presentation bits (0x60) still say what matters.
        kind = int(code) & 0x60
        return {0x00: "allowed", 0x20: "prohib", 0x40: "unavailable"}.get(kind, "")
    return ""


def _unless_unknown(value: str) -> str:
    # Asterisk writes "unknown" when the channel has no valid caller number/name.
    return "" if value == "unknown" else value


def _usable_number(value: str) -> str | None:
    """A caller's number in ``value``: not a no-number word, and not a short code (112, 110,
    14045: what some networks put in From for a handset without a SIM is the number it dialled,
    a service's, never the caller's)."""
    if value.strip().lower() in NO_NUMBER_WORDS:
        return None
    cleaned = _VISUAL_SEPARATORS.sub("", value)
    if not _PHONE.fullmatch(cleaned) or is_short_code(cleaned):
        return None
    return cleaned


def _digits_or_raw(value: str) -> str:
    cleaned = _VISUAL_SEPARATORS.sub("", value)
    return cleaned if _PHONE.fullmatch(cleaned) else value


def _split_name_addrs(value: str) -> list[str]:
    """Split a header list on commas that are outside quotes and angle brackets."""
    parts: list[str] = []
    buf: list[str] = []
    in_quote = in_angle = escaped = False
    for ch in value:
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def _name_and_uri(part: str) -> tuple[str | None, str]:
    lt = part.find("<")
    if lt < 0:
        # addr-spec without brackets: anything after ';' would be header parameters.
        return None, part.strip()
    gt = part.find(">", lt)
    uri = part[lt + 1 : gt] if gt > lt else part[lt + 1 :]
    name = part[:lt].strip()
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1]).strip()
    return (name or None), uri.strip()


def _number_from_uri(uri: str) -> tuple[str, str | None]:
    scheme, sep, rest = uri.partition(":")
    scheme = scheme.strip().lower()
    if not sep:
        return scheme, None
    if scheme == "tel":
        user = rest.split(";", 1)[0]
    elif scheme in ("sip", "sips"):
        userinfo, at, _host = rest.partition("@")
        if not at:
            return scheme, None
        # user:password@host and user;param@host are both legal.
        user = userinfo.split(":", 1)[0].split(";", 1)[0]
    else:
        return scheme, None
    number = _usable_number(urllib.parse.unquote(user, errors="replace"))
    if number is None or len(number) > MAX_SHORT_CHARS:
        return scheme, None
    return scheme, number
