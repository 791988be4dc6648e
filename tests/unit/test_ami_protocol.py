"""The AMI protocol's short way for events (siaga112.telephony.ami_client._EventsProtocol): the
events the catch-all handler takes reach it as panoramisk would have given them, without
panoramisk's Message; responses, the events of an action's list and events with a handler of
panoramisk's own take panoramisk's way."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from siaga112.metrics import Metrics
from siaga112.telephony.ami_client import AmiLink
from siaga112.telephony.ami_events import AmiEvent, ChannelHungUp

TRANSCRIPT = Path(__file__).parents[1] / "fixtures" / "ami" / "answered-call.txt"
T = datetime(2026, 12, 3, tzinfo=UTC)


class Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass


async def _nothing() -> None:
    pass


def _connected(protocol_factory: Any | None = None) -> tuple[AmiLink, Any, list[AmiEvent]]:
    """An AmiLink and its protocol as panoramisk connects them (no socket)."""
    events: list[AmiEvent] = []
    link = AmiLink(
        host="127.0.0.1",
        port=1,
        username="u",
        secret="s",
        on_event=events.append,
        on_login=_nothing,
        metrics=Metrics(),
    )
    manager = link._manager
    protocol = (protocol_factory or manager.config["protocol_factory"])()
    protocol.connection_made(Transport())
    manager.protocol = protocol
    protocol.factory = manager
    protocol.log = manager.log
    return link, protocol, events


def _stream() -> bytes:
    return TRANSCRIPT.read_text().replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.mark.parametrize("chunk", [7, 100, 4096])
async def test_events_arrive_as_panoramisk_gave_them_without_its_message(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = {"n": 0}
    original = Message.from_line.__func__

    def counting(cls: type[Message], line: str) -> Any:
        parsed["n"] += 1
        return original(cls, line)

    monkeypatch.setattr(Message, "from_line", classmethod(counting))
    data = _stream()
    got: dict[str, list[AmiEvent]] = {}
    messages: dict[str, int] = {}
    for name, factory in (("panoramisk", AMIProtocol), ("short", None)):
        parsed["n"] = 0
        _link, protocol, events = _connected(factory)
        # Asterisk's banner comes in a read of its own, then the stream in any pieces.
        banner = data.index(b"\r\n") + 2
        protocol.data_received(data[:banner])
        for i in range(banner, len(data), chunk):
            protocol.data_received(data[i : i + chunk])
        # Events without a Timestamp header (FullyBooted) are timed when received.
        got[name] = [
            replace(e, received_at=T, at=T if e.at == e.received_at else e.at) for e in events
        ]
        messages[name] = parsed["n"]
    assert len(got["short"]) >= 15
    assert got["short"] == got["panoramisk"]
    # panoramisk's Message only for the banner, the login response and FullyBooted (a handler
    # of panoramisk's own, send_awaiting_actions), not for the call's 20 events.
    assert messages["panoramisk"] == 23
    assert messages["short"] == 3


async def test_an_actions_list_and_a_repeated_header_take_panoramisks_way() -> None:
    _link, protocol, events = _connected()
    protocol.version = "9.0.0"
    answer = protocol.send({"Action": "QueueStatus", "ActionID": "qs-1"}, as_list=True)
    protocol.data_received(
        b"Response: Success\r\nActionID: qs-1\r\nEventList: start\r\n"
        b"Message: Queue status will follow\r\n\r\n"
        b"Event: QueueMember\r\nActionID: qs-1\r\nQueue: emergency\r\nName: PJSIP/6001\r\n"
        b"Status: 1\r\n\r\n"
        b"Event: QueueStatusComplete\r\nActionID: qs-1\r\nEventList: Complete\r\n"
        b"ListItems: 1\r\n\r\n"
        # A header twice: panoramisk's Message (a list of both values).
        b"Event: Hangup\r\nChannel: PJSIP/carrier-1\r\nUniqueid: 1.1\r\nLinkedid: 1.1\r\n"
        b"Cause: 16\r\nCause: 17\r\nTimestamp: 1795422360.5\r\n\r\n"
    )
    items = await answer
    assert [dict(m).get("Event") for m in items if "Event" in m] == [
        "QueueMember",
        "QueueStatusComplete",
    ]
    # The list's events were the action's answer, not events for the handler.
    assert len(events) == 1
    hangup = events[0]
    assert isinstance(hangup, ChannelHungUp)
    assert (hangup.uniqueid, hangup.cause) == ("1.1", 16)
