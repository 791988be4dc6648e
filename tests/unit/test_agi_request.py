"""FastAGI request parsing: what an incoming emergency call tells, and that garbage never raises."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siaga112.callers.numbers import normalise_indonesian_number
from siaga112.telephony.agi_request import IncomingCall, parse_incoming_call, parse_pai


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def request(**overrides: str | None) -> dict[str, str]:
    """agi_* variables as res_agi sends them for a carrier call to 112 (Asterisk 22)."""
    env = {
        "agi_network": "yes",
        "agi_network_script": "incoming",
        "agi_request": "agi://127.0.0.1:4573/incoming",
        "agi_channel": "PJSIP/carrier-00000007",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1732345678.14",
        "agi_version": "22.10.1",
        "agi_callerid": "081234567890",
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "112",
        "agi_rdnis": "unknown",
        "agi_context": "from-carrier",
        "agi_extension": "112",
        "agi_priority": "22",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140234567",
        "agi_arg_1": "112",
        "agi_arg_2": b64("<sip:+6281234567890@ims.telkomsel.co.id;user=phone>"),
        "agi_arg_3": b64("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"),
        "agi_arg_4": b64("<cid:loc-1@handset.example>"),
        "agi_arg_5": "allowed_not_screened",
        "agi_arg_6": b64('shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"'),
        "agi_arg_7": "gps",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_full_request_decodes_every_contract_argument() -> None:
    call = parse_incoming_call(request())

    assert call.uniqueid == "1732345678.14"
    assert call.channel == "PJSIP/carrier-00000007"
    assert call.dialled_number == "112"
    assert call.caller_number == "081234567890"
    assert call.caller_name == ""
    assert call.caller_e164 == "+6281234567890"
    assert call.presentation == "allowed_not_screened"
    assert call.caller_id_available is True
    assert call.presentation_restricted is False
    assert call.asserted_number == "+6281234567890"
    assert call.asserted_e164 == "+6281234567890"
    assert call.asserted_restricted is False
    assert call.pai == "<sip:+6281234567890@ims.telkomsel.co.id;user=phone>"
    assert call.pani == "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
    assert call.geolocation == "<cid:loc-1@handset.example>"
    assert call.geoloc_effective == 'shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"'
    assert call.geoloc_method == "gps"
    assert call.problems == ()


def test_linkedid_falls_back_to_uniqueid_because_res_agi_does_not_send_it() -> None:
    assert parse_incoming_call(request()).linkedid == "1732345678.14"


def test_linkedid_is_taken_when_sent() -> None:
    call = parse_incoming_call(request(agi_linkedid="1732345670.2"))
    assert call.linkedid == "1732345670.2"


@pytest.mark.parametrize("value", ["", "unknown", "anonymous", "Anonymous", "restricted"])
def test_missing_or_anonymous_caller_id_is_not_available(value: str) -> None:
    call = parse_incoming_call(request(agi_callerid=value, agi_arg_2=""))
    assert call.caller_id_available is False
    assert call.caller_e164 is None
    assert call.callback_number is None
    assert not any("caller ID" in p for p in call.problems)


def test_junk_caller_id_is_not_available_and_reported() -> None:
    call = parse_incoming_call(request(agi_callerid="x<script>"))
    assert call.caller_id_available is False
    assert call.caller_number == "x<script>"
    assert any("not a phone number" in p for p in call.problems)


@pytest.mark.parametrize("pres", ["prohib_not_screened", "prohib", "unavailable"])
def test_restricted_presentation_hides_caller_id_but_keeps_the_asserted_number(pres: str) -> None:
    call = parse_incoming_call(request(agi_arg_5=pres))

    assert call.caller_id_available is False
    assert call.presentation_restricted is True
    assert call.asserted_restricted is True
    # 112 may override privacy: the network-asserted number stays usable for a callback.
    assert call.callback_number == "+6281234567890"


def test_anonymous_from_with_pai_gives_the_asserted_number_as_callback() -> None:
    call = parse_incoming_call(
        request(
            agi_callerid="anonymous",
            agi_arg_5="prohib_passed_screen",
            agi_arg_2=b64('"Budi" <tel:+62 811-2233-4455>'),
        )
    )
    assert call.caller_id_available is False
    assert call.asserted_number == "+6281122334455"
    assert call.asserted_name == "Budi"
    assert call.callback_number == "+6281122334455"


def test_presentation_falls_back_to_numeric_agi_callingpres() -> None:
    call = parse_incoming_call(request(agi_arg_5=None, agi_callingpres="35"))
    assert call.presentation == "prohib"
    assert call.presentation_restricted is True


def test_unknown_presentation_name_is_reported_and_numeric_value_used() -> None:
    call = parse_incoming_call(request(agi_arg_5="sometimes", agi_callingpres="67"))
    assert call.presentation == "unavailable"
    assert any("presentation" in p for p in call.problems)


def test_absent_headers_are_empty_without_problems() -> None:
    call = parse_incoming_call(
        request(agi_arg_2="", agi_arg_3="", agi_arg_4="", agi_arg_6="", agi_arg_7="")
    )
    assert (call.pai, call.pani, call.geolocation, call.geoloc_effective) == ("", "", "", "")
    assert call.asserted_number is None
    assert call.problems == ()


def test_bad_base64_is_reported_and_other_fields_still_parse() -> None:
    call = parse_incoming_call(request(agi_arg_3="%%%not base64%%%"))
    assert call.pani == ""
    assert any("P-Access-Network-Info" in p and "base64" in p for p in call.problems)
    assert call.asserted_number == "+6281234567890"


def test_base64_without_padding_is_accepted() -> None:
    call = parse_incoming_call(request(agi_arg_7="", agi_arg_3=b64("abcd1").rstrip("=")))
    assert call.pani == "abcd1"


def test_non_utf8_header_is_decoded_with_replacement_and_reported() -> None:
    raw = base64.b64encode(b"<sip:+628111@x>\xff\xfe").decode()
    call = parse_incoming_call(request(agi_arg_2=raw))
    assert call.asserted_number == "+628111"
    assert any("UTF-8" in p for p in call.problems)


def test_nul_and_control_characters_never_reach_the_database() -> None:
    call = parse_incoming_call(request(agi_arg_3=b64("a\x00b\r\nc"), agi_calleridname="Bu\x00di"))
    assert call.pani == "abc"
    assert call.caller_name == "Budi"


def test_overlong_values_are_cut_to_what_the_call_row_holds_and_reported() -> None:
    call = parse_incoming_call(
        request(
            agi_arg_4=b64("x" * 3000),
            agi_arg_2=b64("<tel:+628111>" + ";x" * 600),
            agi_callerid="1" * 100,
            agi_arg_1="9" * 40,
        )
    )
    assert len(call.geolocation) == 2000
    assert len(call.pai) == 1000
    assert call.asserted_number == "+628111"
    assert len(call.caller_number) == 64
    assert len(call.dialled_number) == 32
    assert any("Geolocation" in p and "cut" in p for p in call.problems)
    assert any("P-Asserted-Identity" in p and "cut" in p for p in call.problems)


def test_missing_dialled_number_falls_back_to_extension() -> None:
    call = parse_incoming_call(request(agi_arg_1=""))
    assert call.dialled_number == "112"
    assert any("agi_arg_1" in p for p in call.problems)


def test_request_without_any_arguments_reports_the_broken_contract() -> None:
    env = {k: v for k, v in request().items() if not k.startswith("agi_arg_")}
    call = parse_incoming_call(env)
    assert call.dialled_number == "112"
    assert any("no agi_arg_N" in p for p in call.problems)
    assert call.pai == ""


def test_empty_request_gives_an_empty_call_and_problems() -> None:
    call = parse_incoming_call({})
    assert call.uniqueid == ""
    assert call.caller_id_available is False
    assert "agi_uniqueid missing" in call.problems


def test_non_text_values_are_reported_not_raised() -> None:
    env: dict[object, object] = {"agi_uniqueid": 5, "agi_arg_2": b"bytes", 3: "x"}
    call = parse_incoming_call(env)  # type: ignore[arg-type]
    assert call.uniqueid == ""
    assert any("agi_uniqueid is not text" in p for p in call.problems)
    assert any("P-Asserted-Identity" in p for p in call.problems)


@pytest.mark.parametrize(
    ("header", "number", "name"),
    [
        ("<sip:+6281234567890@ims.example.id;user=phone>", "+6281234567890", None),
        ("<tel:+6281234567890>", "+6281234567890", None),
        ("<tel:+62-21-555-1234;phone-context=+62>", "+62215551234", None),
        ('"Siti Aminah" <sip:081234567890@10.0.0.1>', "081234567890", "Siti Aminah"),
        ("Siti <sip:+628111@host>", "+628111", "Siti"),
        ("sip:+628222@host", "+628222", None),
        ("<sips:+628333:secret@host>", "+628333", None),
        ("<sip:+628444;cpc=ordinary@host>", "+628444", None),
        ("<sip:%2B628555@host>", "+628555", None),
        ('"Doe, John" <sip:alice@host>, <tel:+628666>', "+628666", "Doe, John"),
        ("<sip:+628777@host>, <tel:+628777>", "+628777", None),
        ('"A \\"quoted\\" name" <tel:+628888>', "+628888", 'A "quoted" name'),
        ("<sip:anonymous@anonymous.invalid>", None, None),
        ("<sip:host.example>", None, None),
        ("<mailto:x@y>", None, None),
        ("garbage", None, None),
        ("", None, None),
        ("<sip:+62812@host", "+62812", None),
    ],
)
def test_pai_forms(header: str, number: str | None, name: str | None) -> None:
    assert parse_pai(header) == (number, name)


def test_pai_without_number_is_reported() -> None:
    call = parse_incoming_call(request(agi_arg_2=b64("<sip:anonymous@anonymous.invalid>")))
    assert call.asserted_number is None
    assert any("no phone number" in p for p in call.problems)


def test_tel_identity_is_preferred_over_sip() -> None:
    number, _ = parse_pai("<sip:+628100@ims>, <tel:+628200>")
    assert number == "+628200"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("+6281234567890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("(021) 555 1234", "+62215551234"),
        ("+12125551234", "+12125551234"),
        ("112", "112"),
        ("14045", "14045"),
        ("1500123", "1500123"),
        ("0062812345678", None),
        ("081", None),
        ("62", None),
        ("+0812345678", None),
        ("12345678", None),
        ("0812345678901234", None),
        ("anonymous", None),
        ("", None),
        ("٠٨١٢٣٤٥٦٧٨٩", None),
    ],
)
def test_indonesian_numbers_normalise_only_when_unambiguous(raw: str, e164: str | None) -> None:
    assert normalise_indonesian_number(raw) == e164


agi_keys = st.sampled_from(
    [
        "agi_uniqueid",
        "agi_linkedid",
        "agi_channel",
        "agi_callerid",
        "agi_calleridname",
        "agi_callingpres",
        "agi_extension",
        "agi_dnid",
        *(f"agi_arg_{i}" for i in range(1, 9)),
    ]
)
b64_of_text = st.text(max_size=120).map(b64)
agi_values = st.one_of(
    st.text(max_size=120),
    b64_of_text,
    st.binary(max_size=50).map(lambda b: base64.b64encode(b).decode()),
)


@settings(max_examples=500)
@given(st.dictionaries(agi_keys, agi_values))
def test_any_agi_request_parses_without_raising(env: dict[str, str]) -> None:
    call = parse_incoming_call(env)
    assert isinstance(call, IncomingCall)
    for value in (call.pai, call.pani, call.caller_number, call.caller_name, call.geolocation):
        assert "\x00" not in value
        value.encode("utf-8")
    if call.caller_id_available:
        assert call.callback_number is not None


@given(
    st.dictionaries(
        st.one_of(st.text(), st.integers()),
        st.one_of(st.text(), st.none(), st.integers(), st.binary()),
    )
)
def test_arbitrary_mapping_never_raises(env: dict[object, object]) -> None:
    parse_incoming_call(env)  # type: ignore[arg-type]


@given(st.text(max_size=200))
def test_pai_parser_never_raises_and_returns_only_phone_numbers(header: str) -> None:
    number, _ = parse_pai(header)
    assert number is None or re.fullmatch(r"\+?[0-9]{2,20}", number)


@given(st.lists(st.sampled_from(['"', "<", ">", ",", ";", ":", "@", "\\", "sip", "tel", "+62"])))
def test_pai_parser_survives_unbalanced_quotes_and_brackets(pieces: list[str]) -> None:
    parse_pai("".join(pieces))


@given(st.text(max_size=40))
def test_normalised_numbers_are_plus_digits_or_short_codes(raw: str) -> None:
    out = normalise_indonesian_number(raw)
    if out is not None:
        assert re.fullmatch(r"\+[1-9][0-9]{6,14}|[1-9][0-9]{2,6}", out)


@pytest.mark.parametrize("short", ["112", "110", "113", "118", "119", "14045", "1500112"])
def test_a_short_code_in_from_is_never_a_caller_id_nor_a_callback_number(short: str) -> None:
    # A handset without a SIM (or locked) reaches some networks as From: sip:112@...
    call = parse_incoming_call(request(agi_callerid=short, agi_arg_2=""))
    assert call.caller_id_available is False
    assert call.caller_e164 is None
    assert call.callback_number is None
    assert any("short code" in p for p in call.problems)


def test_a_short_code_asserted_by_the_network_is_no_callback_number_either() -> None:
    call = parse_incoming_call(request(agi_callerid="anonymous", agi_arg_2=b64("<tel:112>")))
    assert call.callback_number is None
