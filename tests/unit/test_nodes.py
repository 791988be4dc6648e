"""Several Asterisk nodes: node settings, ids prefixed with a node's systemname, the node a call
records, per-node rendering and call control routed to the node that has the channel."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from siaga112.callcontrol.protocol import CallControlError, QueueEntryState, QueueMemberState
from siaga112.config import PbxNodeSettings, PbxSettings, Settings
from siaga112.pbxconf.render import node_directories, render_config
from siaga112.telephony.agi_request import parse_incoming_call
from siaga112.telephony.ami_events import Malformed, parse_event, split_transcript
from siaga112.telephony.cdr import parse_cdr_line
from siaga112.telephony.facts import facts_from
from siaga112.telephony.ids import is_node_name, node_of_id
from siaga112.telephony.node_control import NodeCallControl, merge_members
from siaga112.telephony.tracker import CallState, CallStatus, apply_event, call_key

TWO_NODES = [
    PbxNodeSettings(name="pbx-a", ami_host="127.0.0.11", sip_address="127.0.0.11"),
    PbxNodeSettings(name="pbx-b", ami_host="127.0.0.12", sip_address="127.0.0.12"),
]


def two_node_settings() -> Settings:
    return Settings(pbx=PbxSettings(nodes=TWO_NODES))


@pytest.mark.parametrize(
    ("uniqueid", "node"),
    [
        ("pbx-a-1795422356.8", "pbx-a"),
        ("site2-pbx-b-1795422356.12345", "site2-pbx-b"),
        ("a-1.0", "a"),
        ("1795422356.8", None),  # a node without systemname
        ("siaga112-cb-3f2a9c", None),  # a callback leg's id, chosen by siaga112
        ("PBX-A-1795422356.8", None),
        ("", None),
    ],
)
def test_node_of_id_reads_the_systemname_prefix(uniqueid: str, node: str | None) -> None:
    assert node_of_id(uniqueid) == node


def test_node_names_follow_the_setting_pattern() -> None:
    assert is_node_name("pbx-a")
    assert not is_node_name("Pbx-a")
    assert not is_node_name("1pbx")
    assert not is_node_name("a" * 32)


def test_default_is_one_node_from_today_settings() -> None:
    settings = Settings()
    (node,) = settings.pbx_nodes
    assert node.name == "pbx"
    assert node.systemname is None
    assert (node.ami_host, node.ami_port) == (settings.ami.host, settings.ami.port)
    assert node.sip_address == settings.pbx.sip_bind
    assert node.cdr_file == settings.cdr_file


def test_configured_nodes_have_their_own_cdr_files() -> None:
    a, b = two_node_settings().pbx_nodes
    assert (a.systemname, b.systemname) == ("pbx-a", "pbx-b")
    assert a.cdr_file != b.cdr_file


@pytest.mark.parametrize(
    "nodes",
    [
        [TWO_NODES[0], TWO_NODES[0]],
        [
            TWO_NODES[0],
            PbxNodeSettings(name="pbx-c", ami_host="127.0.0.11", sip_address="127.0.0.13"),
        ],
    ],
)
def test_nodes_must_be_distinct(nodes: list[PbxNodeSettings]) -> None:
    with pytest.raises(ValidationError):
        PbxSettings(nodes=nodes)


def test_a_node_name_is_validated() -> None:
    with pytest.raises(ValidationError):
        PbxNodeSettings(name="PBX A", ami_host="127.0.0.11", sip_address="127.0.0.11")


def test_node_rendering_sets_systemname_addresses_and_directories() -> None:
    settings = two_node_settings()
    node = settings.pbx_node("pbx-b")
    files = render_config(
        settings,
        operator_passwords={"6001": "x" * 24, "6002": "y" * 24},
        hostname="h",
        node=node,
        directories=node_directories("/var/lib/siaga112-nodes/pbx-b"),
    )
    assert "systemname = pbx-b" in files["asterisk.conf"]
    assert "astrundir => /var/lib/siaga112-nodes/pbx-b/run" in files["asterisk.conf"]
    assert "bind = 127.0.0.12:5060" in files["pjsip.conf"]
    assert "bindaddr = 127.0.0.12" in files["manager.conf"]
    # The dialplan tells the AGI server its node.
    assert ",${SYSTEMNAME})" in files["extensions.conf"]


def test_single_node_rendering_is_unprefixed() -> None:
    files = render_config(
        Settings(), operator_passwords={"6001": "x" * 24, "6002": "y" * 24}, hostname="h"
    )
    assert "\nsystemname" not in files["asterisk.conf"]
    assert "astrundir => /var/run/asterisk" in files["asterisk.conf"]


def agi_env(**extra: str) -> dict[str, str]:
    env = {
        "agi_uniqueid": "pbx-b-1795422356.8",
        "agi_channel": "PJSIP/carrier-00000008",
        "agi_callerid": "+6281234567890",
        "agi_arg_1": "112",
        "agi_arg_5": "allowed_not_screened",
    }
    env.update(extra)
    return env


def test_the_agi_request_names_its_node() -> None:
    call = parse_incoming_call(agi_env(agi_arg_8="pbx-b"))
    assert call.node == "pbx-b"
    assert call.linkedid == "pbx-b-1795422356.8"
    assert call.problems == ()
    assert facts_from(call).node == "pbx-b"


def test_the_node_comes_from_the_uniqueid_without_the_argument() -> None:
    assert parse_incoming_call(agi_env()).node == "pbx-b"
    assert parse_incoming_call(agi_env(agi_uniqueid="1795422356.8")).node is None


@pytest.mark.parametrize("arg", ["PBX B", "pbx-b;x", "a" * 40])
def test_a_malformed_node_argument_is_refused(arg: str) -> None:
    call = parse_incoming_call(agi_env(agi_arg_8=arg))
    assert call.node == "pbx-b"
    assert any("agi_arg_8" in p for p in call.problems)


def test_the_uniqueid_wins_over_a_contradicting_argument() -> None:
    call = parse_incoming_call(agi_env(agi_arg_8="pbx-a"))
    assert call.node == "pbx-b"
    assert any("differs" in p for p in call.problems)


class FakeControl:
    def __init__(self, name: str, *, members: list[QueueMemberState] | None = None) -> None:
        self.name = name
        self.actions: list[tuple[str, ...]] = []
        self.members = members or []
        self.fail = False

    async def queue_add(self, *, queue: str, interface: str, member_name: str) -> None:
        if self.fail:
            raise CallControlError("no AMI")
        self.actions.append(("add", queue, interface))

    async def queue_remove(self, *, queue: str, interface: str) -> None:
        self.actions.append(("remove", queue, interface))

    async def queue_pause(self, *, queue: str, interface: str, paused: bool, reason: str) -> None:
        self.actions.append(("pause", queue, interface))

    async def queue_members(self, *, queue: str) -> list[QueueMemberState]:
        return self.members

    async def queue_entries(self) -> list[QueueEntryState]:
        return [QueueEntryState("emergency", 1, "PJSIP/carrier-1", f"{self.name}-1.1", "", 0)]

    async def hangup(self, *, channel: str, node: str | None = None) -> None:
        self.actions.append(("hangup", channel))

    async def redirect(
        self, *, channel: str, context: str, exten: str, node: str | None = None
    ) -> None:
        self.actions.append(("redirect", channel))

    async def reload_sip_accounts(self) -> None:
        self.actions.append(("reload",))

    async def originate(
        self,
        *,
        endpoint: str,
        context: str,
        exten: str,
        caller_id: str,
        ring_s: int,
        channel_id: str,
        variables: Mapping[str, str],
    ) -> None:
        if self.fail:
            raise CallControlError("no AMI")
        self.actions.append(("originate", channel_id))


def routed(up: set[str] | None = None) -> tuple[NodeCallControl, FakeControl, FakeControl]:
    a, b = FakeControl("pbx-a"), FakeControl("pbx-b")
    up = {"pbx-a", "pbx-b"} if up is None else up
    return NodeCallControl(controls={"pbx-a": a, "pbx-b": b}, is_up=lambda n: n in up), a, b


async def test_an_action_on_a_channel_goes_to_its_node_only() -> None:
    control, a, b = routed()
    await control.hangup(channel="PJSIP/carrier-00000001", node="pbx-b")
    await control.redirect(channel="PJSIP/carrier-00000001", context="c", exten="1", node="pbx-b")
    assert a.actions == []
    assert b.actions == [
        ("hangup", "PJSIP/carrier-00000001"),
        ("redirect", "PJSIP/carrier-00000001"),
    ]


async def test_a_channel_of_an_unknown_node_is_never_guessed() -> None:
    control, a, b = routed()
    with pytest.raises(CallControlError):
        await control.hangup(channel="PJSIP/carrier-00000001", node=None)
    with pytest.raises(CallControlError):
        await control.hangup(channel="PJSIP/carrier-00000001", node="pbx-z")
    assert a.actions == b.actions == []


async def test_queue_sessions_apply_on_every_node_that_is_up() -> None:
    control, a, b = routed(up={"pbx-b"})
    await control.queue_add(queue="emergency", interface="PJSIP/6001", member_name="6001")
    assert a.actions == []
    assert b.actions == [("add", "emergency", "PJSIP/6001")]
    control, a, b = routed()
    a.fail = True
    await control.queue_add(queue="emergency", interface="PJSIP/6001", member_name="6001")
    assert b.actions == [("add", "emergency", "PJSIP/6001")]
    b.fail = True
    with pytest.raises(CallControlError):
        await control.queue_add(queue="emergency", interface="PJSIP/6001", member_name="6001")


async def test_waiting_callers_of_every_node_are_listed() -> None:
    control, _, _ = routed()
    entries = await control.queue_entries()
    assert sorted(e.uniqueid for e in entries) == ["pbx-a-1.1", "pbx-b-1.1"]


async def test_a_callback_is_placed_through_a_node_that_is_up() -> None:
    control, a, b = routed(up={"pbx-b"})
    await control.originate(
        endpoint="PJSIP/6001",
        context="c",
        exten="s",
        caller_id="112",
        ring_s=20,
        channel_id="siaga112-cb-x",
        variables={},
    )
    assert (a.actions, b.actions) == ([], [("originate", "siaga112-cb-x")])


def member(device: str, *, paused: bool = False, reason: str = "") -> QueueMemberState:
    return QueueMemberState("emergency", "PJSIP/6001", "6001", device, paused, reason, False)


def test_an_operator_busy_on_one_node_is_busy() -> None:
    merged = merge_members([[member("not_in_use")], [member("in_use")]])
    assert [m.state for m in merged] == ["in_call"]
    merged = merge_members([[member("unavailable")], [member("not_in_use", paused=True)]])
    assert [m.state for m in merged] == ["paused"]


def test_paused_on_one_node_and_free_on_another_is_idle() -> None:
    """The node that can still offer the operator a call decides: not paused, whatever the
    order of the nodes' answers."""
    for order in (1, -1):
        nodes = [[member("not_in_use", paused=True, reason="istirahat")], [member("not_in_use")]]
        merged = merge_members(nodes[::order])
        assert [(m.state, m.paused) for m in merged] == [("idle", False)]
    merged = merge_members(
        [[member("not_in_use", paused=True, reason="rapat")], [member("not_in_use", paused=True)]]
    )
    assert [(m.state, m.pause_reason) for m in merged] == [("paused", "rapat")]


# --- real captures of a node with systemname (tests/fixtures/*/node-*) ------------------------
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)


def agi_capture(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (FIXTURES / "agi" / name).read_text().splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            env[key] = value
    return env


def test_a_captured_agi_request_of_a_named_node_parses_with_its_node() -> None:
    env = agi_capture("incoming-observed-node.txt")
    assert env["agi_uniqueid"].startswith("pbx-a-")
    call = parse_incoming_call(env)
    assert call.node == "pbx-a"
    assert call.uniqueid == call.linkedid == env["agi_uniqueid"]
    assert call.problems == ()


def test_a_captured_ami_transcript_of_a_named_node_folds_into_its_call() -> None:
    text = (FIXTURES / "ami" / "node-abandoned-call.txt").read_text()
    events = [
        e
        for e in (parse_event(m, received_at=RECEIVED) for m in split_transcript(text))
        if e is not None
    ]
    assert not [e for e in events if isinstance(e, Malformed)]
    states: dict[str, CallState] = {}
    for event in events:
        key = call_key(event)
        if key is None:
            continue
        new, _ = apply_event(states.get(key), event)
        if new is not None:
            states[key] = new
    (key,) = states
    assert node_of_id(key) == "pbx-a"
    assert states[key].linkedid == key
    assert states[key].state in (CallStatus.ENDED, CallStatus.ABANDONED)


def test_a_captured_cdr_line_of_a_named_node_round_trips_its_ids() -> None:
    lines = (FIXTURES / "cdr" / "node-call.csv").read_text().splitlines()
    records = [r for r in (parse_cdr_line(line) for line in lines) if r is not None]
    assert records
    for record in records:
        assert node_of_id(record.uniqueid) == "pbx-a"
        assert node_of_id(record.linkedid) == "pbx-a"
