"""The rendered Asterisk configuration carries each site's settings and the fail-open path."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from siaga112.config import (
    RECORDINGS_SUBDIR,
    AgiSettings,
    AmiSettings,
    PbxSettings,
    RecordingSettings,
    Settings,
)
from siaga112.pbxconf.render import OVERFLOW_PENALTY, OVERFLOW_RULE, render_config, write_config
from siaga112.telephony.ami_events import parse_event
from siaga112.telephony.contract import AMI_EVENTS, AMI_QUEUE_EVENTS


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
        agi = block.index("AGI(agi://127.0.0.1:4599/incoming?key=")
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
    # What passes the filter is what the adapters parse: every name in it becomes an event.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for name in filtered:
        assert parse_event({"Event": name, "Uniqueid": "1.1"}, received_at=at) is not None, name
    assert "VarSet" not in filtered
    assert re.findall(r"^permit = (\S+)$", manager, re.M) == ["127.0.0.1/32"]
    assert "deny = 0.0.0.0/0.0.0.0" in manager
    # DialEnd only of siaga112's callback legs: app_queue raises one for every member it rings.
    assert "DialEnd" not in filtered
    assert (
        "eventfilter(action(include),name(DialEnd),header(Uniqueid),method(starts_with))"
        " = siaga112-cb-"
    ) in manager
    # Queue member events only of the operators' queue: operator states follow no other.
    queue = _settings(tmp_path).pbx.queue_name
    scoped = re.findall(
        r"^eventfilter\(action\(include\),name\((\w+)\),header\(Queue\),method\(exact\)\)"
        r" = (\S+)$",
        manager,
        re.M,
    )
    assert sorted(scoped) == sorted((e, queue) for e in AMI_QUEUE_EVENTS)
    assert {"QueueMemberStatus", "QueueMemberPause"} <= set(AMI_QUEUE_EVENTS)
    assert not filtered & set(AMI_QUEUE_EVENTS)


def test_ami_permits_the_service_hosts_of_a_deployment(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(
        update={"ami": AmiSettings(secret=SecretStr("x"), permit=["10.1.2.3", "10.9.0.0/16"])}
    )
    manager = render_config(settings, operator_passwords={"6001": "a", "6002": "b"}, hostname="h")[
        "manager.conf"
    ]
    assert re.findall(r"^permit = (\S+)$", manager, re.M) == ["10.1.2.3/32", "10.9.0.0/16"]
    with pytest.raises(ValueError, match="permit"):
        AmiSettings(permit=["not-an-address"])


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


def test_queue_and_answer_times_reach_asterisks_own_record(tmp_path: Path) -> None:
    files = render_config(
        _settings(tmp_path), operator_passwords={"6001": "pw1", "6002": "pw2"}, hostname="centre"
    )
    conf = files["extensions.conf"]
    block = conf[conf.index("exten => 112,1,Answer()") :]
    enqueued = block.index("Set(CDR(siaga112_enqueued)=")
    queue = block.index("Queue(${SIAGA112_QUEUE_USED},r,,,,,siaga112-answered)")
    assert enqueued < queue
    # The Queue() gosub puts the answer time on the caller's channel; its hangup handler
    # writes it into the CDR, whose columns name both times.
    answered = conf[conf.index("[siaga112-answered]") :]
    assert "Set(MASTER_CHANNEL(SIAGA112_ANSWERED_AT)=" in answered.split("\n[")[0]
    hangup = conf[conf.index("[siaga112-hangup]") :].split("\n[")[0]
    assert "Set(CDR(siaga112_answered)=${SIAGA112_ANSWERED_AT})" in hangup
    fields = files["cdr_custom.conf"]
    assert fields.index("siaga112_operator(uservar)") < fields.index("siaga112_enqueued(uservar)")
    assert fields.index("siaga112_enqueued(uservar)") < fields.index("siaga112_answered(uservar)")


def _render_settings(settings: Settings) -> dict[str, str]:
    return render_config(settings, operator_passwords={"6001": "a", "6002": "b"}, hostname="h")


def test_both_emergency_queues_record_from_the_operators_answer(tmp_path: Path) -> None:
    files = _render_settings(_settings(tmp_path))
    queues = files["queues.conf"]
    template = queues[queues.index("[queue-template](!)") : queues.index("[emergency](")]
    assert re.search(r"^monitor-format = wav$", template, re.M)
    assert "[emergency](queue-template)" in queues
    assert "[emergency-low](queue-template)" in queues
    # The file name (with this call's Uniqueid) is set on every path to Queue(), also after
    # an AGI timeout (label "queue").
    ext = files["extensions.conf"]
    block = ext[ext.index("exten => 112,1,Answer()") :]
    label = block.index("n(queue),")
    name = block.index(
        "Set(MONITOR_FILENAME=siaga112/${STRFTIME(${EPOCH},UTC,%Y/%m/%d)}/${UNIQUEID}-^{EPOCH})"
    )
    assert label < name < block.index("Queue(${SIAGA112_QUEUE_USED}")
    # A caller sent back to the queue after a failed transfer: the first file ends there.
    transfer = ext[ext.index("[siaga112-transfer]") :]
    assert transfer.index("StopMixMonitor()") < transfer.index("Queue(${SIAGA112_BACK},r)")


def test_recording_modules_are_loaded_and_never_noloaded(tmp_path: Path) -> None:
    modules = _render_settings(_settings(tmp_path))["modules.conf"]
    for module in ("app_mixmonitor.so", "format_wav.so", "format_wav_gsm.so"):
        assert f"load => {module}" in modules
        assert f"noload => {module}" not in modules


def test_gsm_format_and_disabled_recording_render(tmp_path: Path) -> None:
    gsm = _settings(tmp_path).model_copy(update={"recordings": RecordingSettings(format="wav49")})
    assert re.search(r"^monitor-format = wav49$", _render_settings(gsm)["queues.conf"], re.M)
    off = _settings(tmp_path).model_copy(update={"recordings": RecordingSettings(enabled=False)})
    assert not re.search(r"^monitor-format", _render_settings(off)["queues.conf"], re.M)


def test_recordings_are_read_inside_the_sandbox_unless_configured(tmp_path: Path) -> None:
    local = _settings(tmp_path)
    assert local.recordings_dir == (
        local.pbx_root / "var/spool/asterisk/monitor" / RECORDINGS_SUBDIR
    )
    shared = _settings(tmp_path, recordings_path=tmp_path / "nfs")
    assert shared.recordings_dir == tmp_path / "nfs"


def _render(tmp_path: Path, **pbx: object) -> dict[str, str]:
    return render_config(
        _settings(tmp_path, **pbx), operator_passwords={"6001": "a", "6002": "b"}, hostname="h"
    )


def _settings_only(conf: str) -> str:
    """The configuration without its comments."""
    return "\n".join(line.split(";", 1)[0] for line in conf.splitlines())


def _queue_section(queues: str, name: str) -> str:
    start = queues.index(f"[{name}](queue-template)")
    end = queues.find("\n[", start + 1)
    return queues[start : end if end != -1 else None]


def test_without_overflow_targets_nothing_overflows(tmp_path: Path) -> None:
    files = {k: _settings_only(v) for k, v in _render(tmp_path).items()}
    assert "Local/" not in files["queues.conf"]
    assert "defaultrule" not in files["queues.conf"]
    assert "penaltychange" not in files["queuerules.conf"]
    assert "QUEUE_RAISE_PENALTY" not in files["extensions.conf"]
    assert "QUEUE_MAX_PENALTY" not in files["extensions.conf"]


def test_overflow_targets_are_members_of_both_queues_behind_the_operators(
    tmp_path: Path,
) -> None:
    files = _render(tmp_path, overflow_targets=["PJSIP/9001", "+62215550112"], overflow_after_s=20)
    queues = files["queues.conf"].replace(" ", "")
    for name in ("emergency", "emergency-low"):
        section = _queue_section(queues, name)
        assert f"defaultrule={OVERFLOW_RULE}" in section
        assert "member=>PJSIP/6001\n" in section
        # A supervisor phone: rung through the overflow context, its own device state decides.
        assert (
            f"member=>Local/9001@siaga112-overflow/n,{OVERFLOW_PENALTY},overflow:9001,PJSIP/9001\n"
            in section
        )
        # A neighbouring centre: may ring for several callers at once.
        assert (
            f"member=>Local/+62215550112@siaga112-overflow/n,{OVERFLOW_PENALTY},"
            "overflow:+62215550112,,yes\n" in section
        )
    assert OVERFLOW_PENALTY > 0
    # After the wait, operators are raised to the overflow penalty: all ring together. The
    # rule opens a flagged caller's max penalty at the same time.
    rules = files["queuerules.conf"].replace(" ", "")
    assert f"[{OVERFLOW_RULE}]\npenaltychange=>20,{OVERFLOW_PENALTY},,{OVERFLOW_PENALTY}" in rules
    ext = files["extensions.conf"]
    context = ext[ext.index("[siaga112-overflow]") :]
    assert "exten => 9001,1,Dial(PJSIP/9001)" in context
    assert (
        "exten => +62215550112,1,Dial(PJSIP/carrier/sip:+62215550112@${SIAGA112_OUTBOUND_TRUNK})"
        in context
    )


def test_overflow_dialplan_sets_the_penalties_the_rule_changes_before_the_queue(
    tmp_path: Path,
) -> None:
    ext = _render(tmp_path, overflow_targets=["+62215550112"], overflow_after_s=30)[
        "extensions.conf"
    ]
    block = ext[ext.index("exten => 112,1,Answer()") :]
    queue = block.index("Queue(${SIAGA112_QUEUE_USED},r")
    # The rule changes only variables the dialplan set: raise starts at 0 (no effect) ...
    raise_at = block.index("Set(QUEUE_RAISE_PENALTY=0)")
    # ... and a flagged number reaches the overflow targets only after the wait.
    flagged = block.index("ExecIf($[${LEN(${SIAGA112_FLAGGED})} > 0]?Set(QUEUE_MAX_PENALTY=0))")
    assert raise_at < queue
    assert flagged < queue
    # Nothing between the AGI step and the queue can end the call.
    between = block[block.index("AGI(") : queue]
    assert "Hangup" not in between


def test_overflow_without_wait_rings_everyone_together_from_the_start(tmp_path: Path) -> None:
    files = {
        k: _settings_only(v)
        for k, v in _render(tmp_path, overflow_targets=["+62215550112"], overflow_after_s=0).items()
    }
    assert f"Set(QUEUE_RAISE_PENALTY={OVERFLOW_PENALTY})" in files["extensions.conf"]
    assert "QUEUE_MAX_PENALTY" not in files["extensions.conf"]
    assert "defaultrule" not in files["queues.conf"]
    assert "penaltychange" not in files["queuerules.conf"]


@pytest.mark.parametrize(
    "targets",
    [["SIP/9001"], ["PJSIP/90 01"], ["+62-21-555"], ["x"], ["+62215550112", "+62215550112"],
     ["PJSIP/112", "112"]],
)  # fmt: skip
def test_malformed_or_repeated_overflow_targets_are_refused(targets: list[str]) -> None:
    with pytest.raises(ValidationError):
        PbxSettings(overflow_targets=targets)


def test_both_queues_keep_the_demo_operators(tmp_path: Path) -> None:
    queues = _render(tmp_path)["queues.conf"].replace(" ", "")
    for name in ("emergency", "emergency-low"):
        section = _queue_section(queues, name)
        assert "member=>PJSIP/6001\n" in section
        assert "member=>PJSIP/6002\n" in section


def test_render_writes_an_etc_asterisk_for_a_pbx_host_with_secrets_closed(tmp_path: Path) -> None:
    settings = _settings(tmp_path, demo_operators=[])
    written = write_config(settings, tmp_path / "etc-asterisk")
    names = {p.name for p in written}
    assert {"extensions.conf", "manager.conf", "pjsip.conf", "queues.conf"} <= names
    assert "hosts" not in names
    manager = tmp_path / "etc-asterisk" / "manager.conf"
    assert "s3cret-for-test" in manager.read_text()
    assert stat.S_IMODE(manager.stat().st_mode) == 0o640
    # The dialplan holds the FastAGI secret.
    assert stat.S_IMODE((tmp_path / "etc-asterisk" / "extensions.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "etc-asterisk" / "queues.conf").stat().st_mode) == 0o644


def test_the_ami_account_cannot_read_or_rewrite_config_nor_run_commands(tmp_path: Path) -> None:
    files = _render(tmp_path)
    write = re.search(r"^write = (.*)$", files["manager.conf"], re.M)
    assert write is not None
    classes = set(write.group(1).split(","))
    assert classes == {"call", "agent", "originate", "reporting"}
    for module in ("app_system", "func_shell"):
        assert f"noload => {module}.so" in files["modules.conf"]


def test_the_dialplan_sends_the_agi_secret(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    conf = render_config(settings, operator_passwords={"6001": "a", "6002": "b"}, hostname="h")
    key = settings.agi_secret.get_secret_value()
    assert f"/incoming?key={key}&t=${{STRFTIME(,,%s.%6q)}}," in conf["extensions.conf"]


def test_events_asterisk_never_builds_are_none_siaga112_reads(tmp_path: Path) -> None:
    from siaga112.pbxconf.render import AMI_DISABLED_EVENTS, STASIS_DECLINED_TYPES
    from siaga112.telephony.contract import AMI_SCOPED_EVENTS

    read = (
        {e.lower() for e in AMI_EVENTS}
        | {e.lower() for e, _, _ in AMI_SCOPED_EVENTS}
        | {e.lower() for e in AMI_QUEUE_EVENTS}
    )
    assert not read & {e.lower() for e in AMI_DISABLED_EVENTS}
    # VarSet, AGIExec*, HangupHandler*, RTCP*: events of the declined message types.
    assert not read & {"varset", "agiexecstart", "agiexecend", "rtcpsent", "rtcpreceived"}
    rendered = render_config(
        _settings(tmp_path), operator_passwords={"6001": "a", "6002": "b"}, hostname="h"
    )
    disabled = re.search(r"^disabledevents = (\S+)$", rendered["manager.conf"], re.M)
    assert disabled is not None
    # Asterisk matches the names between commas exactly: no spaces.
    assert disabled.group(1).split(",") == list(AMI_DISABLED_EVENTS)
    declined = re.findall(
        r"^decline = (\S+)$", rendered["stasis.conf"].split("[declined_message_types]")[1], re.M
    )
    assert declined == list(STASIS_DECLINED_TYPES)
    # Message types other parts of the PBX consume stay: CDR, queues, call tracking; and the
    # ones the manager routes by type (declining one stops Asterisk from starting).
    assert not set(declined) & {
        "ast_channel_hangup_handler_type",
        "ast_channel_hangup_request_type",
        "ast_channel_snapshot_type",
        "ast_channel_dial_type",
        "ast_channel_entered_bridge_type",
        "ast_channel_left_bridge_type",
        "ast_device_state_message_type",
        "cdr_write_message_type",
    }
    assert not [t for t in declined if t.startswith("queue_")]


def test_several_agi_targets_are_tried_in_order_within_one_budget(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings = settings.model_copy(
        update={"agi": settings.agi.model_copy(update={"targets": ["10.0.0.1:4573", "h2:4574"]})}
    )
    conf = render_config(settings, operator_passwords={"6001": "a", "6002": "b"}, hostname="c")[
        "extensions.conf"
    ]
    block = conf[conf.index("exten => 112,1,Answer()") :]
    block = block[: block.index("\n\n")]
    key = settings.agi_secret.get_secret_value()
    first = block.index(f"AGI(agi://10.0.0.1:4573/incoming?key={key}&t=${{STRFTIME(,,%s.%6q)}},")
    second = block.index(f"AGI(agi://h2:4574/incoming?key={key}&t=${{STRFTIME(,,%s.%6q)}},")
    queue = block.index("Queue(")
    assert first < second < queue
    # One deadline for both: the budget, taken once before the first try.
    assert block.count("SIAGA112_AGI_DEADLINE=$[") == 1
    assert "+ 1.200])" in block
    # The first try is capped at its share; the second gets what is left; success skips it.
    assert ":0.840)" in block
    assert block.index('(agi2),GotoIf($["${AGISTATUS}" = "SUCCESS"]?agidone)') < second
    assert "Set(TIMEOUT(absolute)=${SIAGA112_AGI_LEFT})" in block[first:second]
    # A try that ran out of time moves on to the next; after the last, the queue.
    timeout = conf[conf.index("exten => T,1") :]
    assert (
        "GotoIf($[${SIAGA112_AGI_TRY} < 2]?${SIAGA112_DIALLED},agi$[${SIAGA112_AGI_TRY} + 1])"
        in (timeout)
    )
    assert timeout.index("agi$[") < timeout.index("Goto(${SIAGA112_DIALLED},queue)")


def test_agi_targets_must_be_host_and_port() -> None:
    assert AgiSettings(targets=[" a:1 ", "127.0.0.1:4573"]).agi_targets() == [
        "a:1",
        "127.0.0.1:4573",
    ]
    assert AgiSettings(host="h", port=9).agi_targets() == ["h:9"]
    for bad in ("host", "host:", ":1", "h:99999", "h/x:1", "h,i:1"):
        with pytest.raises(ValidationError):
            AgiSettings(targets=[bad])
