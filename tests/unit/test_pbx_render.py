"""The rendered Asterisk configuration carries each site's settings and the fail-open path."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from siaga112.config import AgiSettings, AmiSettings, PbxSettings, Settings
from siaga112.telephony.pbx import AMI_EVENTS, render_config


def _settings(tmp_path: Path, **pbx: object) -> Settings:
    return Settings(
        state_dir=tmp_path,
        ami=AmiSettings(secret=SecretStr("s3cret-for-test")),
        agi=AgiSettings(budget_ms=1200, port=4599),
        pbx=PbxSettings(**pbx),
    )


def test_every_emergency_and_alias_number_runs_answer_agi_then_queue(tmp_path: Path) -> None:
    conf = render_config(
        _settings(tmp_path, alias_numbers=["110", "113"]),
        operator_passwords={"6001": "pw1", "6002": "pw2"},
        hostname="centre",
    )["extensions.conf"]
    for number in ("112", "110", "113"):
        block = conf[conf.index(f"exten => {number},1,Answer()") :]
        agi = block.index("AGI(agi://127.0.0.1:4599/incoming,${EXTEN}")
        queue = block.index("Queue(${SIAGA112_QUEUE_USED}")
        assert agi < queue, number
    # The budget bounds the AGI step; its expiry (T) goes on to the queue.
    assert "Set(TIMEOUT(absolute)=1.200)" in conf
    assert re.search(r"exten => T,1,.*\n(.*\n)*?.*Goto\(\$\{SIAGA112_DIALLED\},queue\)", conf)
    assert "exten => 119," not in conf


def test_carrier_is_identified_by_source_address_and_operators_by_digest(tmp_path: Path) -> None:
    files = render_config(
        _settings(tmp_path, carrier_addresses=["10.20.0.5", "10.20.0.6"]),
        operator_passwords={"6001": "pw-one", "6002": "pw-two"},
        hostname="centre",
    )
    pjsip = files["pjsip.conf"]
    assert "match = 10.20.0.5" in pjsip
    assert "match = 10.20.0.6" in pjsip
    assert "password = pw-one" in pjsip.replace("password=", "password = ")
    assert "send_connected_line = no" in pjsip.replace(
        "send_connected_line=", "send_connected_line = "
    )
    assert "centre" in files["hosts"]


def test_manager_is_loopback_with_the_secret_and_only_tracked_events(tmp_path: Path) -> None:
    manager = render_config(
        _settings(tmp_path), operator_passwords={"6001": "a", "6002": "b"}, hostname="h"
    )["manager.conf"]
    assert re.search(r"bindaddr\s*=\s*127\.0\.0\.1", manager)
    assert re.search(r"secret\s*=\s*s3cret-for-test", manager)
    filtered = set(re.findall(r"eventfilter\(action\(include\),name\((\w+)\)\)", manager))
    assert filtered == set(AMI_EVENTS)
    assert "VarSet" not in filtered
    # DialEnd only of siaga112's callback legs: app_queue raises one for every member it rings.
    assert "DialEnd" not in filtered
    assert (
        "eventfilter(action(include),name(DialEnd),header(Uniqueid),method(starts_with))"
        " = siaga112-cb-"
    ) in manager


def test_callback_context_dials_out_through_the_trunk_and_phones_cannot_reach_it(
    tmp_path: Path,
) -> None:
    conf = render_config(
        _settings(tmp_path, outbound_trunk="10.20.0.9:5060"),
        operator_passwords={"6001": "a", "6002": "b"},
        hostname="h",
    )["extensions.conf"]
    assert "SIAGA112_OUTBOUND_TRUNK = 10.20.0.9:5060" in conf
    block = conf[conf.index("[siaga112-callback]") :]
    assert (
        "Dial(PJSIP/carrier/sip:${EXTEN}@${SIAGA112_OUTBOUND_TRUNK},${SIAGA112_CALLBACK_RING_S})"
        in block
    )
    operators = conf[conf.index("[operators]") : conf.index("[siaga112-transfer]")]
    assert "include" not in operators


def test_queue_never_rejects_callers_when_nobody_is_logged_in(tmp_path: Path) -> None:
    queues = render_config(
        _settings(tmp_path), operator_passwords={"6001": "a", "6002": "b"}, hostname="h"
    )["queues.conf"].replace(" ", "")
    assert "joinempty=yes" in queues
    assert "leavewhenempty=no" in queues


def test_rtp_has_no_ice_or_stun(tmp_path: Path) -> None:
    rtp = render_config(
        _settings(tmp_path), operator_passwords={"6001": "a", "6002": "b"}, hostname="h"
    )["rtp.conf"].replace(" ", "")
    assert "icesupport=no" in rtp
    assert "stunaddr" not in rtp.replace(";stunaddr", "")
