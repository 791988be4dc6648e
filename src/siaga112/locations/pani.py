"""P-Access-Network-Info (3GPP TS 24.229 §7.2A.4) to a cell global identity. Pure, no I/O.

The carrier's P-CSCF/SBC names the radio access the call came over and the serving cell::

    3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E; network-provided

The cell parameter is MCC (3 digits) + MNC (2 or 3 digits) + an area code + a cell identity in
hexadecimal, with lengths that depend on the access type:

============================  ===================  ==========  =============================
access type                   parameter            area        cell identity
============================  ===================  ==========  =============================
3GPP-GERAN                    cgi-3gpp             LAC 4 hex   CI 4 hex (16 bits)
3GPP-UTRAN-FDD / -TDD         utran-cell-id-3gpp   LAC 4 hex   UC-Id 7 hex (28 bits) or CI 4
3GPP-E-UTRAN-FDD / -TDD       utran-cell-id-3gpp   TAC 4 hex   ECI 7 hex (28 bits)
                                                   (6 hex when connected to 5GC)
3GPP-NR-FDD / -TDD            utran-cell-id-3gpp   TAC 6 hex   NCI 9 hex (36 bits)
============================  ===================  ==========  =============================

Parts of the cell identity:

- UTRAN UC-Id (TS 25.401): RNC-Id = UC-Id >> 16 (12 bits), C-Id = UC-Id & 0xFFFF.
- E-UTRAN ECI (TS 36.401): eNB ID = ECI >> 8 (20 bits, macro eNB), cell = ECI & 0xFF.
- NR NCI (TS 38.300 §8.2, TS 38.413 §9.3.1.6): the gNB ID is the leftmost 22..32 bits of the
  36-bit NCI; how many is the operator's choice and is not signalled in the header. The default
  here is 24 bits (12-bit local cell id), a common vendor default; it is configurable
  (``SIAGA112_LOCATIONS__GNB_ID_BITS``). Only the displayed split depends on it: the cell table
  is keyed on the whole NCI.

A header may hold several access-net-specs separated by commas (the UE's own and the one the
network added); the network-provided one is preferred because the UE's is not trustworthy.

Nothing here raises on any input text: a header that does not give a cell comes back with
``ok=False``, the ``reason``, and the raw text, and the call goes on regardless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from siaga112.locations import mccmnc

__all__ = [
    "DEFAULT_GNB_ID_BITS",
    "CellGlobalId",
    "PaniResult",
    "Radio",
    "parse_pani",
]

DEFAULT_GNB_ID_BITS = 24
MAX_PANI_CHARS = 2000


class Radio(StrEnum):
    """Radio technology, spelled as OpenCelliD's ``radio`` column spells it."""

    GSM = "GSM"
    UMTS = "UMTS"
    LTE = "LTE"
    NR = "NR"


# (area hex digits, cell hex digits) allowed per radio, most usual first.
_LAYOUTS: dict[Radio, tuple[tuple[int, int], ...]] = {
    Radio.GSM: ((4, 4),),
    Radio.UMTS: ((4, 7), (4, 4)),
    Radio.LTE: ((4, 7), (6, 7)),
    Radio.NR: ((6, 9),),
}

_CELL_PARAMS = ("utran-cell-id-3gpp", "cgi-3gpp")
_NETWORK_PROVIDED = frozenset({"network-provided", "np"})
_HEX = re.compile(r"[0-9A-Fa-f]+", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def _radio_for(access_type: str) -> Radio | None:
    # Access types and access classes both (3GPP-E-UTRAN is the class of -FDD and -TDD); newer
    # variants such as 3GPP-NR-U-FDD or 3GPP-NR-SAT share their family's cell layout.
    t = access_type.upper()
    if t.startswith("3GPP-NR"):
        return Radio.NR
    if t.startswith("3GPP-E-UTRAN"):
        return Radio.LTE
    if t.startswith("3GPP-UTRAN"):
        return Radio.UMTS
    if t.startswith("3GPP-GERAN"):
        return Radio.GSM
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CellGlobalId:
    """One serving cell: network (MCC/MNC), area (LAC or TAC) and cell identity with its parts."""

    radio: Radio
    mcc: str
    mnc: str
    area: int
    """LAC for GSM and UMTS, TAC for LTE and NR."""
    cell: int
    """CI (GSM, short UMTS), UC-Id (UMTS), ECI (LTE) or NCI (NR)."""
    node_id: int | None
    """RNC-Id, eNB ID or gNB ID; None where the identity has no node part (GSM CI)."""
    local_cell_id: int | None
    """C-Id, the cell within the eNB, or the cell within the gNB."""
    node_id_bits: int | None

    @property
    def area_kind(self) -> str:
        return "tac" if self.radio in (Radio.LTE, Radio.NR) else "lac"

    @property
    def node_kind(self) -> str | None:
        return {Radio.UMTS: "rnc", Radio.LTE: "enb", Radio.NR: "gnb"}.get(self.radio)

    @property
    def plmn(self) -> str:
        return f"{self.mcc}-{self.mnc}"

    @property
    def network(self) -> str | None:
        return mccmnc.network_name(self.mcc, self.mnc)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description, as kept in a location's raw payload."""
        return {
            "radio": self.radio.value,
            "mcc": self.mcc,
            "mnc": self.mnc,
            "plmn": self.plmn,
            "network": self.network,
            "area_kind": self.area_kind,
            "area": self.area,
            "cell": self.cell,
            "node_kind": self.node_kind,
            "node_id": self.node_id,
            "local_cell_id": self.local_cell_id,
            "node_id_bits": self.node_id_bits,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PaniResult:
    ok: bool
    raw: str
    reason: str | None = None
    """Why no cell came out of the header (None when ``ok``)."""
    access_type: str | None = None
    network_provided: bool = False
    cell: CellGlobalId | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "raw": self.raw[:MAX_PANI_CHARS],
            "reason": self.reason,
            "access_type": self.access_type,
            "network_provided": self.network_provided,
            "cell": self.cell.as_dict() if self.cell else None,
        }


@dataclass(frozen=True, slots=True)
class _Spec:
    access_type: str
    params: dict[str, str]
    network_provided: bool


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def _specs(text: str) -> list[_Spec]:
    specs: list[_Spec] = []
    for chunk in _split_outside_quotes(text, ","):
        fields = [f.strip() for f in _split_outside_quotes(chunk, ";")]
        if not fields or not fields[0]:
            continue
        params: dict[str, str] = {}
        flags: set[str] = set()
        for field in fields[1:]:
            if not field:
                continue
            name, eq, value = field.partition("=")
            name = name.strip().lower()
            if eq:
                params.setdefault(name, value.strip().strip('"').strip())
            else:
                flags.add(name)
        specs.append(_Spec(fields[0], params, bool(flags & _NETWORK_PROVIDED)))
    return specs


def _cell_from(
    value: str, radio: Radio, *, gnb_id_bits: int
) -> tuple[CellGlobalId | None, str | None]:
    if not _HEX.fullmatch(value):
        return None, "cell identity is not hexadecimal"
    mcc = value[:3]
    if not _DIGITS.fullmatch(mcc):
        return None, "MCC is not three decimal digits"
    rest = value[3:]
    candidates: list[tuple[int, int, int]] = []
    for mnc_len in (2, 3):
        if not _DIGITS.fullmatch(rest[:mnc_len]) or len(rest) < mnc_len:
            continue
        for area_len, cell_len in _LAYOUTS[radio]:
            if len(rest) == mnc_len + area_len + cell_len:
                candidates.append((mnc_len, area_len, cell_len))
    if not candidates:
        return None, f"cell identity of {len(value)} characters does not fit {radio.value}"
    if len({c[0] for c in candidates}) > 1:
        preferred = mccmnc.choose_mnc_length(mcc, rest)
        candidates = [c for c in candidates if c[0] == preferred] or candidates
    mnc_len, area_len, cell_len = candidates[0]
    mnc = rest[:mnc_len]
    # A 2-digit MNC written as three digits (printed with %03d, as some SBCs do): the field
    # lengths say 3, the country and the network table say 2.
    if (
        mnc_len == 3
        and mnc[0] == "0"
        and mccmnc.default_mnc_length(mcc) == 2
        and mccmnc.is_known(mcc, mnc[1:])
        and not mccmnc.is_known(mcc, mnc)
    ):
        mnc = mnc[1:]
    area = int(rest[mnc_len : mnc_len + area_len], 16)
    cell = int(rest[mnc_len + area_len :], 16)
    node_id: int | None
    local: int | None
    node_bits: int | None
    if radio is Radio.GSM or (radio is Radio.UMTS and cell_len == 4):
        node_id, local, node_bits = None, cell, None
    elif radio is Radio.UMTS:
        node_id, local, node_bits = cell >> 16, cell & 0xFFFF, 12
    elif radio is Radio.LTE:
        node_id, local, node_bits = cell >> 8, cell & 0xFF, 20
    else:
        local_bits = 36 - gnb_id_bits
        node_id, local, node_bits = cell >> local_bits, cell & ((1 << local_bits) - 1), gnb_id_bits
    return (
        CellGlobalId(
            radio=radio,
            mcc=mcc,
            mnc=mnc,
            area=area,
            cell=cell,
            node_id=node_id,
            local_cell_id=local,
            node_id_bits=node_bits,
        ),
        None,
    )


def _parse_spec(spec: _Spec, *, gnb_id_bits: int) -> tuple[CellGlobalId | None, str | None]:
    radio = _radio_for(spec.access_type)
    if radio is None:
        return None, f"access type {spec.access_type[:40]!r} carries no 3GPP cell identity"
    value = next((spec.params[p] for p in _CELL_PARAMS if p in spec.params), None)
    if value is None:
        return None, f"{spec.access_type[:40]} without cgi-3gpp or utran-cell-id-3gpp"
    return _cell_from(value, radio, gnb_id_bits=gnb_id_bits)


def parse_pani(text: str | None, *, gnb_id_bits: int = DEFAULT_GNB_ID_BITS) -> PaniResult:
    """The serving cell named by a P-Access-Network-Info header value; never raises on text.

    ``gnb_id_bits`` (22..32) splits an NR cell identity into gNB ID and local cell id.
    """
    if not 22 <= gnb_id_bits <= 32:
        raise ValueError(f"gNB ID length must be 22..32 bits, not {gnb_id_bits}")
    raw = text or ""
    if not raw.strip():
        return PaniResult(ok=False, raw=raw, reason="no P-Access-Network-Info")
    body = raw[:MAX_PANI_CHARS].strip()
    if body.lower().startswith("p-access-network-info:"):
        body = body.split(":", 1)[1]
    specs = _specs(body)
    if not specs:
        return PaniResult(ok=False, raw=raw, reason="no access-net-spec")
    # The network's own statement first; then the order the header gives.
    ordered = sorted(specs, key=lambda s: not s.network_provided)
    first_reason: str | None = None
    for spec in ordered:
        cell, reason = _parse_spec(spec, gnb_id_bits=gnb_id_bits)
        if cell is not None:
            return PaniResult(
                ok=True,
                raw=raw,
                access_type=spec.access_type.upper(),
                network_provided=spec.network_provided,
                cell=cell,
            )
        first_reason = first_reason or reason
    top = ordered[0]
    return PaniResult(
        ok=False,
        raw=raw,
        reason=first_reason or "no cell identity",
        access_type=top.access_type[:60].upper() or None,
        network_provided=top.network_provided,
    )
