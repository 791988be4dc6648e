"""AML parsing (ETSI TS 103 625 SMS, Android ELS HTTPS) and signatures: every field, the
validation that refuses a message, and no parser raising on any input."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siaga112.locations.aml import (
    decode_data_sms,
    parse_aml_https,
    parse_aml_sms,
    parse_form,
    split_signature,
    verify_signature,
)

ETSI_SAMPLE = (
    'A"ML=1;lt=+54.76397;lg=-0.18305;rd=50;top=20130717141935;lc=90;pm=W;'
    "si=123456789012345;ei=1234567890123456;mcc=234;mnc=30;ml=128"
)


def with_length(body: str) -> str:
    """An AML SMS with its ml field computed (ml counts the whole message, itself included)."""
    for digits in (2, 3, 4):
        candidate = f"{body};ml={len(body) + 4 + digits}"
        if len(candidate) == int(candidate.rsplit("=", 1)[1]):
            return candidate
    raise AssertionError("no length fits")


def test_etsi_sample_every_field() -> None:
    result = parse_aml_sms(ETSI_SAMPLE)
    assert result.ok, result.reason
    m = result.message
    assert m is not None
    assert (m.channel, m.version) == ("sms", "1")
    assert (m.lat, m.lon, m.radius_m, m.confidence) == (54.76397, -0.18305, 50.0, 90)
    assert m.observed_at == datetime(2013, 7, 17, 14, 19, 35, tzinfo=UTC)
    assert m.method == "wifi"
    assert (m.imsi, m.imei) == ("123456789012345", "1234567890123456")
    assert (m.network_mcc, m.network_mnc) == ("234", "30")
    assert m.length_declared == 128
    assert m.fields["pm"] == "W"


@pytest.mark.parametrize(("pm", "method"), [("G", "gnss"), ("W", "wifi"), ("C", "cell")])
def test_positioning_methods(pm: str, method: str) -> None:
    text = with_length(
        f'A"ML=1;lt=-6.28211;lg=+106.97432;rd=8.5;top=20261123080000;lc=68;pm={pm};'
        "si=510100000000000;ei=355458061005220;mcc=510;mnc=10"
    )
    result = parse_aml_sms(text)
    assert result.ok, result.reason
    assert result.message is not None
    assert result.message.method == method
    assert (result.message.lat, result.message.lon) == (-6.28211, 106.97432)
    assert result.message.radius_m == 8.5


def test_no_fix_has_no_coordinates() -> None:
    text = (
        'A"ML=1;lt=+00.00000;lg=+000.00000;rd=N;top=20220131173734;lc=0;pm=N;'
        "si=234159000000000;ei=123456789012345;mcc=234;mnc=15;ml=127"
    )
    result = parse_aml_sms(text)
    assert result.ok, result.reason
    m = result.message
    assert m is not None
    assert (m.lat, m.lon, m.radius_m, m.method, m.has_fix) == (None, None, None, "none", False)


def test_gateway_line_end_is_not_counted() -> None:
    assert parse_aml_sms(ETSI_SAMPLE + "\r\n").ok


ETSI_BODY = ETSI_SAMPLE.removesuffix(";ml=128")


def changed(old: str, new: str) -> str:
    return with_length(ETSI_BODY.replace(old, new))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (ETSI_SAMPLE.replace("ml=128", "ml=129"), "ml"),  # altered
        (ETSI_SAMPLE.replace("lc=90", "lc=9"), "ml"),  # altered
        (ETSI_SAMPLE[:-10], None),  # truncated: ml lost
        (changed("pm=W", "pm=X"), "pm"),
        (changed("lt=+54.76397", "lt=+94.76397"), "lt"),
        (changed("lg=-0.18305", "lg=east"), "lg"),
        (changed("top=20130717141935", "top=20131317141935"), "top"),
        (changed("rd=50", "rd=-5"), "rd"),
        (changed("lc=90", "lc=190"), "lc"),
        (changed("mcc=234", "mcc=23"), "mcc"),
        (changed("si=123456789012345", "si=12345678901234x"), "si"),
        (changed("ei=1234567890123456", "ei=12345678901234567"), "ei"),
        (changed('A"ML=1', 'A"ML=7'), 'A"ML'),
        ("hello, is this 112?", 'A"ML'),
        (changed(";lc=90", ";lt=1"), "lt"),  # a field twice
    ],
)
def test_invalid_sms_is_refused_naming_the_field(text: str, field: str | None) -> None:
    result = parse_aml_sms(text)
    assert not result.ok
    assert result.reason
    if field is not None:
        assert result.field == field


def test_data_sms_8bit_with_port_header() -> None:
    udh = bytes([0x06, 0x05, 0x04, 0x1F, 0x90, 0x00, 0x00])
    data = base64.b64encode(udh + ETSI_SAMPLE.encode()).decode()
    assert decode_data_sms(data) == ETSI_SAMPLE
    assert decode_data_sms(data, udhi=True) == ETSI_SAMPLE


def test_data_sms_plain_8bit() -> None:
    assert decode_data_sms(base64.b64encode(ETSI_SAMPLE.encode()).decode()) == ETSI_SAMPLE


def pack_gsm7(text: str) -> bytes:
    out = bytearray()
    acc = bits = 0
    for ch in text:
        acc |= ord(ch) << bits  # AML characters have the same codes in GSM 03.38
        bits += 7
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc & 0xFF)
    return bytes(out)


def test_data_sms_gsm7_packed() -> None:
    data = base64.b64encode(pack_gsm7(ETSI_SAMPLE)).decode()
    assert decode_data_sms(data, udhi=False) == ETSI_SAMPLE


def test_data_sms_junk_gives_none() -> None:
    assert decode_data_sms("not base64 !!!") is None
    assert decode_data_sms(base64.b64encode(b"hello").decode()) is None


HTTPS_FIELDS = {
    "v": "1",
    "emergency_number": "112",
    "source": "call",
    "thunderbird_version": "2800",
    "time": "1795422360123",
    "location_latitude": "-6.28211",
    "location_longitude": "106.97432",
    "location_time": "1795422362000",
    "location_altitude": "21.5",
    "location_altitude_msl": "18",
    "location_floor": "3",
    "location_source": "gps",
    "location_accuracy": "12.5",
    "location_vertical_accuracy": "4",
    "location_vertical_accuracy_msl": "4",
    "location_confidence": "0.6827",
    "location_bearing": "156.7",
    "location_speed": "1.2",
    "device_number": "+6281234567890",
    "device_model": "Samsung SM-A155F",
    "device_imsi": "510101234567890",
    "device_imei": "355458061005220",
    "device_iccid": "8962100000000000001",
    "cell_home_mcc": "510",
    "cell_home_mnc": "10",
    "cell_network_mcc": "510",
    "cell_network_mnc": "10",
}


def test_https_every_field() -> None:
    result = parse_aml_https(HTTPS_FIELDS)
    assert result.ok, result.reason
    m = result.message
    assert m is not None
    assert (m.channel, m.version, m.emergency_number, m.activation) == ("https", "1", "112", "call")
    assert (m.lat, m.lon, m.radius_m, m.confidence, m.method) == (
        -6.28211,
        106.97432,
        12.5,
        68,
        "gnss",
    )
    assert m.call_started_at == datetime.fromtimestamp(1795422360.123, UTC)
    assert m.observed_at == datetime.fromtimestamp(1795422362, UTC)
    assert (m.altitude_m, m.vertical_accuracy_m, m.floor) == (21.5, 4.0, "3")
    assert (m.bearing_deg, m.speed_mps) == (156.7, 1.2)
    assert (m.number, m.device_model) == ("+6281234567890", "Samsung SM-A155F")
    assert (m.imsi, m.imei, m.iccid) == (
        "510101234567890",
        "355458061005220",
        "8962100000000000001",
    )
    assert (m.home_mcc, m.home_mnc, m.network_mcc, m.network_mnc) == ("510", "10", "510", "10")
    assert m.fields["thunderbird_version"] == "2800"
    assert m.as_dict()["observed_at"].startswith("2026-")


@pytest.mark.parametrize(
    ("source", "method"),
    [("wifi", "wifi"), ("cell", "cell"), ("fused", "fused"), ("unknown", "unknown")],
)
def test_https_location_sources(source: str, method: str) -> None:
    result = parse_aml_https(HTTPS_FIELDS | {"location_source": source})
    assert result.message is not None
    assert result.message.method == method


def test_https_without_fix_is_accepted_without_coordinates() -> None:
    fields = {k: v for k, v in HTTPS_FIELDS.items() if not k.startswith("location_")}
    result = parse_aml_https(fields)
    assert result.message is not None
    assert (result.message.lat, result.message.radius_m, result.message.method) == (
        None,
        None,
        "none",
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"location_latitude": "-96"}, "location_latitude"),
        ({"location_longitude": "abc"}, "location_longitude"),
        ({"location_accuracy": "-1"}, "location_accuracy"),
        ({"location_time": "yesterday"}, "location_time"),
        ({"device_number": "call me"}, "device_number"),
        ({"v": "3"}, "v"),
        ({"cell_network_mcc": "5100"}, "cell_network_mcc"),
    ],
)
def test_https_invalid_field_is_refused(change: dict[str, str], field: str) -> None:
    result = parse_aml_https(HTTPS_FIELDS | change)
    assert not result.ok
    assert result.field == field


def test_https_latitude_without_longitude_is_refused() -> None:
    fields = dict(HTTPS_FIELDS)
    del fields["location_longitude"]
    assert not parse_aml_https(fields).ok


def test_form_parsing_refuses_repeated_fields_and_junk() -> None:
    assert parse_form(b"a=1&b=2") == ({"a": "1", "b": "2"}, None)
    assert parse_form(b"a=1&a=2")[0] is None
    assert parse_form(b"\xff\xfe")[0] is None
    assert parse_form(b"novalue")[0] is None
    # Percent escapes: a NUL, a bad escape, a control character, non-UTF-8 bytes.
    assert parse_form(b"a=1&b=x%00y")[0] is None
    assert parse_form(b"a=1&b=%zz")[0] is None
    assert parse_form(b"a=%")[0] is None
    assert parse_form(b"a=%1b%5b31m")[0] is None
    assert parse_form(b"a=%ff")[0] is None
    assert parse_form(b"a=%41%2B+b") == ({"a": "A+ b"}, None)


def test_signature_over_the_bytes_before_hmac() -> None:
    body = b"v=1&device_number=%2B6281234567890&location_latitude=-6.2"
    mac = hmac.new(b"s3cret", body, hashlib.sha256)
    split = split_signature(body + b"&hmac=" + mac.hexdigest().encode())
    assert split == (body, mac.hexdigest())
    assert verify_signature(body, mac.hexdigest(), [b"other", b"s3cret"])
    b64 = base64.b64encode(mac.digest()).decode()
    assert verify_signature(body, b64, [b"s3cret"])
    assert not verify_signature(body, mac.hexdigest(), [b"wrong"])
    assert not verify_signature(body + b"x", mac.hexdigest(), [b"s3cret"])
    assert split_signature(body) is None
    assert split_signature(body + b"&hmac=abc&more=1") is None


@settings(max_examples=400)
@given(st.text(max_size=300))
def test_sms_parser_never_raises(text: str) -> None:
    parse_aml_sms(text)


aml_keys = st.sampled_from(
    ['A"ML', "lt", "lg", "rd", "top", "lc", "pm", "si", "ei", "mcc", "mnc", "ml", "zz"]
)


@settings(max_examples=400)
@given(st.lists(st.tuples(aml_keys, st.text(max_size=20)), max_size=14))
def test_sms_parser_never_raises_on_near_valid_input(pairs: list[tuple[str, str]]) -> None:
    parse_aml_sms(";".join(f"{k}={v}" for k, v in pairs))


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(HTTPS_FIELDS)), st.text(max_size=30)))
def test_https_parser_never_raises(fields: dict[str, str]) -> None:
    parse_aml_https(fields)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_form_signature_and_data_sms_decoders_never_raise(body: bytes) -> None:
    parse_form(body)
    split_signature(body)
    decode_data_sms(base64.b64encode(body).decode())
    decode_data_sms(body.decode("latin-1"))
