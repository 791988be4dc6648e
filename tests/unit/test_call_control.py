"""Call control over AMI: QueueStatus member lists become operator states; AMI refusals become
CallControlError, except the harmless 'already there' / 'not there' answers."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from siaga112.callcontrol.protocol import CallControlError
from siaga112.telephony.ami_call_control import AmiCallControl, parse_queue_members


def member(**fields: str) -> dict[str, str]:
    base = {
        "Event": "QueueMember",
        "Queue": "emergency",
        "Name": "7001",
        "Location": "PJSIP/7001",
        "StateInterface": "PJSIP/7001",
        "Status": "1",
        "Paused": "0",
        "PausedReason": "",
        "InCall": "0",
    }
    return base | fields


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({}, "idle"),
        ({"Status": "5"}, "offline"),
        ({"Status": "4"}, "offline"),
        ({"Status": "6"}, "ringing"),
        ({"Status": "2", "InCall": "1"}, "in_call"),
        ({"Paused": "1", "PausedReason": "break"}, "paused"),
        ({"Paused": "1", "Status": "2", "InCall": "1"}, "in_call"),
        ({"Paused": "1", "Status": "5"}, "offline"),
    ],
)
def test_queue_member_status_maps_to_operator_state(fields: dict[str, str], state: str) -> None:
    [parsed] = parse_queue_members([member(**fields)])
    assert parsed.state == state
    assert parsed.interface == "PJSIP/7001"


def test_only_member_items_are_parsed_and_reason_kept() -> None:
    items = [
        {"Event": "QueueParams", "Queue": "emergency"},
        member(Paused="1", PausedReason="toilet"),
        {"Event": "QueueEntry", "Queue": "emergency", "Uniqueid": "1.1"},
        {"Event": "QueueStatusComplete"},
    ]
    [parsed] = parse_queue_members(items)
    assert (parsed.paused, parsed.pause_reason, parsed.name) == (True, "toilet", "7001")


class FakeAmi:
    def __init__(self, reply: Mapping[str, str]) -> None:
        self.reply = reply
        self.sent: list[Mapping[str, str]] = []

    async def send(self, action: Mapping[str, str]) -> Mapping[str, str]:
        self.sent.append(action)
        return self.reply

    async def send_list(self, action: Mapping[str, str]) -> list[Mapping[str, str]]:
        self.sent.append(action)
        return [member()]


async def test_queue_add_sends_member_name_and_state_interface() -> None:
    ami = FakeAmi({"Response": "Success"})
    control = AmiCallControl(send_action=ami.send, send_list=ami.send_list)
    await control.queue_add(queue="emergency", interface="PJSIP/7001", member_name="7001")
    [sent] = ami.sent
    assert sent["Action"] == "QueueAdd"
    assert (sent["MemberName"], sent["StateInterface"]) == ("7001", "PJSIP/7001")


async def test_already_member_is_not_an_error_but_a_refused_pause_is() -> None:
    ami = FakeAmi({"Response": "Error", "Message": "Unable to add interface: Already there"})
    control = AmiCallControl(send_action=ami.send, send_list=ami.send_list)
    await control.queue_add(queue="emergency", interface="PJSIP/7001", member_name="7001")
    ami.reply = {"Response": "Error", "Message": "Interface not found"}
    with pytest.raises(CallControlError, match="Interface not found"):
        await control.queue_pause(
            queue="emergency", interface="PJSIP/7001", paused=True, reason="break"
        )
    assert ami.sent[-1]["Reason"] == "break"


async def test_queue_members_come_from_queue_status() -> None:
    ami = FakeAmi({"Response": "Success"})
    control = AmiCallControl(send_action=ami.send, send_list=ami.send_list)
    [m] = await control.queue_members(queue="emergency")
    assert m.state == "idle"
    assert ami.sent[0] == {"Action": "QueueStatus", "Queue": "emergency"}
