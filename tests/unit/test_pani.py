"""P-Access-Network-Info parsing: every 3GPP access type, MNC lengths, cell identity parts,
several access-net-specs; anything else comes back with a reason and never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siaga112.locations import mccmnc
from siaga112.locations.pani import Radio, parse_pani


def test_e_utran_fdd_gives_tac_eci_enb_and_cell() -> None:
    r = parse_pani("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E")
    assert r.ok
    assert r.reason is None
    assert r.access_type == "3GPP-E-UTRAN-FDD"
    c = r.cell
    assert c is not None
    assert (c.radio, c.mcc, c.mnc, c.area_kind) == (Radio.LTE, "510", "10", "tac")
    assert c.area == 0x00A1
    assert c.cell == 0xB2C3D4E
    assert c.node_id == 0xB2C3D4E >> 8
    assert c.local_cell_id == 0x4E
    assert c.network == "Telkomsel"
    assert c.plmn == "510-10"


def test_e_utran_tdd_with_5gc_six_digit_tac() -> None:
    r = parse_pani("3GPP-E-UTRAN-TDD; utran-cell-id-3gpp=51089ABCDEF0123456")
    assert r.cell is not None
    assert (r.cell.radio, r.cell.mnc, r.cell.area, r.cell.cell) == (
        Radio.LTE,
        "89",
        0xABCDEF,
        0x0123456,
    )
    assert r.cell.network == "Indosat Ooredoo Hutchison (Three/H3I)"


def test_geran_cgi_gives_lac_and_ci() -> None:
    r = parse_pani("3GPP-GERAN; cgi-3gpp=51001123A4567")
    assert r.cell is not None
    assert (r.cell.radio, r.cell.mnc, r.cell.area_kind, r.cell.area, r.cell.cell) == (
        Radio.GSM,
        "01",
        "lac",
        0x123A,
        0x4567,
    )
    assert r.cell.node_id is None
    assert r.cell.network == "Indosat Ooredoo Hutchison"


@pytest.mark.parametrize("access", ["3GPP-UTRAN-FDD", "3GPP-UTRAN-TDD"])
def test_utran_uc_id_splits_into_rnc_and_cid(access: str) -> None:
    r = parse_pani(f"{access}; utran-cell-id-3gpp=51011BEEF0ABCDEF")
    assert r.cell is not None
    assert (r.cell.radio, r.cell.mnc, r.cell.area) == (Radio.UMTS, "11", 0xBEEF)
    assert r.cell.cell == 0x0ABCDEF
    assert r.cell.node_id == 0x0AB
    assert r.cell.local_cell_id == 0xCDEF
    assert r.cell.node_kind == "rnc"


def test_utran_short_ci_has_no_rnc() -> None:
    r = parse_pani("3GPP-UTRAN-FDD; utran-cell-id-3gpp=51028BEEF1234")
    assert r.cell is not None
    assert (r.cell.mnc, r.cell.cell, r.cell.node_id) == ("28", 0x1234, None)


@pytest.mark.parametrize("access", ["3GPP-NR-FDD", "3GPP-NR-TDD"])
def test_nr_gives_tac_nci_and_gnb_split_by_configured_length(access: str) -> None:
    nci = 0x123456789
    header = f"{access}; utran-cell-id-3gpp=51010ABCDEF{nci:09X}"
    default = parse_pani(header)
    assert default.cell is not None
    assert (default.cell.radio, default.cell.area, default.cell.cell) == (Radio.NR, 0xABCDEF, nci)
    assert default.cell.node_id == nci >> 12
    assert default.cell.local_cell_id == nci & 0xFFF
    assert default.cell.node_id_bits == 24
    wide = parse_pani(header, gnb_id_bits=32)
    assert wide.cell is not None
    assert (wide.cell.node_id, wide.cell.local_cell_id) == (nci >> 4, nci & 0xF)


def test_gnb_length_outside_3gpp_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"22\.\.32"):
        parse_pani("3GPP-NR-FDD; utran-cell-id-3gpp=51010ABCDEF123456789", gnb_id_bits=21)


def test_three_digit_mnc_read_from_length() -> None:
    r = parse_pani("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=31041000A1B2C3D4E")
    assert r.cell is not None
    assert (r.cell.mcc, r.cell.mnc, r.cell.network) == ("310", "410", "AT&T Mobility")


def test_two_digit_mnc_padded_to_three_is_read_as_the_known_network() -> None:
    r = parse_pani("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=51001000A1B2C3D4E")
    assert r.cell is not None
    assert (r.cell.mnc, r.cell.network) == ("10", "Telkomsel")


def test_mnc_length_choice_prefers_known_network_then_country() -> None:
    assert mccmnc.choose_mnc_length("510", "109") == 2  # 510-10 known, 510-109 not
    assert mccmnc.choose_mnc_length("310", "410") == 3  # 310-410 known, 310-41 not
    assert mccmnc.choose_mnc_length("999", "123") == 2  # unknown: most countries use 2
    assert mccmnc.choose_mnc_length("405", "123") == 3  # unknown, India uses 3


@pytest.mark.parametrize(
    ("mnc", "name"),
    [
        ("01", "Indosat Ooredoo Hutchison"),
        ("08", "XL Axiata (AXIS)"),
        ("09", "Smartfren"),
        ("10", "Telkomsel"),
        ("11", "XL Axiata"),
        ("21", "Indosat Ooredoo Hutchison (IM3)"),
        ("28", "Smartfren (Fren)"),
        ("89", "Indosat Ooredoo Hutchison (Three/H3I)"),
        ("99", "Esia (Bakrie Telecom, closed)"),
    ],
)
def test_indonesian_operators_are_named(mnc: str, name: str) -> None:
    assert mccmnc.network_name("510", mnc) == name


def test_network_provided_spec_wins_over_the_ue_one() -> None:
    r = parse_pani(
        '3GPP-E-UTRAN-FDD; utran-cell-id-3gpp="51010000100000001", '
        "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E; network-provided"
    )
    assert r.network_provided
    assert r.cell is not None
    assert r.cell.cell == 0xB2C3D4E


def test_quoted_value_extra_params_and_case_are_accepted() -> None:
    r = parse_pani(
        'P-Access-Network-Info: 3gpp-e-utran-fdd ; "ignored"; '
        'UTRAN-CELL-ID-3GPP="5101000A1B2C3D4E"; local-time-zone="UTC+07:00"'
    )
    assert r.ok
    assert r.cell is not None
    assert r.cell.area == 0xA1


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "no P-Access-Network-Info"),
        ("   ", "no P-Access-Network-Info"),
        ("IEEE-802.11; i-wlan-node-id=ffffff000000", "carries no 3GPP cell identity"),
        ("3GPP-E-UTRAN-FDD", "without cgi-3gpp or utran-cell-id-3gpp"),
        ("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=51010ZZZZ", "not hexadecimal"),
        ("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B", "does not fit LTE"),
        ("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=AB01000A1B2C3D4E", "MCC is not three"),
        ("3GPP-GERAN; cgi-3gpp=5101000A1B2C3D4E", "does not fit GSM"),
    ],
)
def test_unusable_header_is_kept_raw_with_reason(header: str, reason: str) -> None:
    r = parse_pani(header)
    assert not r.ok
    assert r.cell is None
    assert r.reason is not None
    assert reason in r.reason
    assert r.raw == header
    assert r.as_dict()["raw"] == header


def test_none_is_no_header() -> None:
    r = parse_pani(None)
    assert (r.ok, r.raw, r.reason) == (False, "", "no P-Access-Network-Info")


_TOKENS = st.sampled_from(
    [
        "3GPP-E-UTRAN-FDD",
        "3GPP-NR-TDD",
        "3GPP-GERAN",
        "3GPP-UTRAN-FDD",
        ";",
        ",",
        "=",
        '"',
        "utran-cell-id-3gpp",
        "cgi-3gpp",
        "network-provided",
        "510",
        "10",
        "0A1B2C3D4E",
        "FFFFFFFFF",
        " ",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(_TOKENS, max_size=25).map("".join)))
def test_parser_never_raises_on_any_text(text: str) -> None:
    r = parse_pani(text)
    assert r.raw == text
    assert r.ok == (r.cell is not None)
    assert r.ok or r.reason
    r.as_dict()
