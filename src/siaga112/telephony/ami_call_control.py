"""The AMI implementation of call control (`siaga112.callcontrol.protocol.CallControl`), and
QueueStatus answers parsed into the protocol's typed states."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

from siaga112.callcontrol.protocol import (
    DEVICE_STATUS,
    CallControlError,
    QueueEntryState,
    QueueMemberState,
)

# What may go into an AMI header value: no line breaks (a CR/LF would start a new header or
# action) and, inside a Variable header, no comma (Asterisk splits variables on commas).
# The dialplan context (rendered into extensions.conf) of the Local channel that runs Reload().
RELOAD_CONTEXT = "siaga112-reload"
_HEADER_UNSAFE = re.compile(r"[\r\n]")
_VARIABLE_UNSAFE = re.compile(r"[\r\n,=]")


def _header_value(name: str, value: str) -> str:
    if _HEADER_UNSAFE.search(value):
        raise CallControlError(f"{name} must be one line")
    return value


def _int(value: str | None) -> int:
    try:
        return int(value or "0")
    except ValueError:
        return 0


def parse_queue_entries(items: Sequence[Mapping[str, str]]) -> list[QueueEntryState]:
    """The QueueEntry list items of a QueueStatus answer as typed waiting callers."""
    return [
        QueueEntryState(
            queue=item.get("Queue", ""),
            position=_int(item.get("Position")),
            channel=item.get("Channel", ""),
            uniqueid=item.get("Uniqueid", ""),
            caller_number=item.get("CallerIDNum", ""),
            wait_s=_int(item.get("Wait")),
        )
        for item in items
        if item.get("Event") == "QueueEntry" and item.get("Uniqueid")
    ]


def parse_queue_members(items: Sequence[Mapping[str, str]]) -> list[QueueMemberState]:
    """The QueueMember list items of a QueueStatus answer as typed states."""
    out: list[QueueMemberState] = []
    for item in items:
        if item.get("Event") != "QueueMember":
            continue
        interface = item.get("StateInterface") or item.get("Location", "")
        out.append(
            QueueMemberState(
                queue=item.get("Queue", ""),
                interface=interface,
                name=item.get("Name") or item.get("MemberName", ""),
                device=DEVICE_STATUS.get(item.get("Status", "0"), "unknown"),
                paused=item.get("Paused", "0") == "1",
                pause_reason=item.get("PausedReason", ""),
                in_call=item.get("InCall", "0") == "1",
            )
        )
    return out


SendAction = Callable[[Mapping[str, str]], Awaitable[Mapping[str, str]]]
SendList = Callable[[Mapping[str, str]], Awaitable[list[Mapping[str, str]]]]


class AmiCallControl:
    """CallControl over AMI actions (QueueAdd, QueueRemove, QueuePause, QueueStatus, Hangup,
    Redirect, Originate)."""

    def __init__(self, *, send_action: SendAction, send_list: SendList) -> None:
        self._send = send_action
        self._send_list = send_list

    async def _ok(self, action: Mapping[str, str], *, tolerate: str = "") -> None:
        reply = await self._send(action)
        if reply.get("Response") == "Success":
            return
        message = reply.get("Message", "")
        if tolerate and tolerate in message:
            return
        raise CallControlError(f"{action.get('Action')} failed: {message or reply}")

    async def queue_add(self, *, queue: str, interface: str, member_name: str) -> None:
        await self._ok(
            {
                "Action": "QueueAdd",
                "Queue": queue,
                "Interface": interface,
                "MemberName": member_name,
                "StateInterface": interface,
                "Paused": "false",
            },
            tolerate="Already there",
        )

    async def queue_remove(self, *, queue: str, interface: str) -> None:
        await self._ok(
            {"Action": "QueueRemove", "Queue": queue, "Interface": interface},
            tolerate="Not there",
        )

    async def queue_pause(self, *, queue: str, interface: str, paused: bool, reason: str) -> None:
        action = {
            "Action": "QueuePause",
            "Queue": queue,
            "Interface": interface,
            "Paused": "true" if paused else "false",
        }
        if reason:
            action["Reason"] = reason
        await self._ok(action)

    async def queue_members(self, *, queue: str) -> list[QueueMemberState]:
        items = await self._send_list({"Action": "QueueStatus", "Queue": queue})
        return parse_queue_members(items)

    async def queue_entries(self) -> list[QueueEntryState]:
        return parse_queue_entries(await self._send_list({"Action": "QueueStatus"}))

    # One node's AMI: ``node`` was chosen by whoever routed the action here.
    async def hangup(self, *, channel: str, node: str | None = None) -> None:
        await self._ok({"Action": "Hangup", "Channel": channel, "Cause": "16"})

    async def redirect(
        self, *, channel: str, context: str, exten: str, node: str | None = None
    ) -> None:
        await self._ok(
            {
                "Action": "Redirect",
                "Channel": channel,
                "Context": context,
                "Exten": exten,
                "Priority": "1",
            }
        )

    async def reload_sip_accounts(self) -> None:
        # PJSIP realtime endpoints are found without it, but res_pjsip links an endpoint to its
        # registrations' state (hence the device state app_queue rings by) only for endpoints
        # it has seen at load or reload: without this, a new operator stays "Unavailable".
        # Not the AMI Reload action: it needs the `system` class, which also allows ModuleLoad
        # (load app_system, then Originate System()). Nor Originate of the Reload application:
        # Asterisk refuses it to accounts without `system` ("app or data blacklisted"). The
        # dialplan runs Reload() instead (extensions.conf): `originate` suffices for that.
        await self._ok(
            {
                "Action": "Originate",
                "Channel": f"Local/answer@{RELOAD_CONTEXT}/n",
                "Context": RELOAD_CONTEXT,
                "Exten": "s",
                "Priority": "1",
                "Timeout": "4000",
                "Async": "false",
            }
        )

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
        for key, value in variables.items():
            if not key or _VARIABLE_UNSAFE.search(key) or _VARIABLE_UNSAFE.search(value):
                raise CallControlError(f"variable {key!r} cannot be passed to Originate")
        action = {
            "Action": "Originate",
            # The same id twice: OriginateResponse names the ActionID (also when the channel
            # never existed), every channel event the Uniqueid.
            "ActionID": _header_value("ChannelId", channel_id),
            "ChannelId": channel_id,
            "Channel": _header_value("Channel", endpoint),
            "Context": _header_value("Context", context),
            "Exten": _header_value("Exten", exten),
            "Priority": "1",
            "CallerID": _header_value("CallerID", caller_id),
            "Timeout": str(max(1, ring_s) * 1000),
            # Async: the answer comes at once; how the call went comes as events.
            "Async": "true",
        }
        if variables:
            action["Variable"] = ",".join(f"{k}={v}" for k, v in variables.items())
        await self._ok(action)
