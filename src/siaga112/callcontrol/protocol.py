"""The small call-control interface the domain depends on (DESIGN.md section 1): queue
membership, hang up, redirect, originate. Domain services never see an AMI dict: they get typed
member and caller states back. The AMI implementation is `siaga112.telephony.ami_call_control`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

# Queue members that stand for an overflow target (a supervisor's phone, a neighbouring centre)
# rather than an operator carry this prefix in their member name.
OVERFLOW_MEMBER_PREFIX = "overflow:"

MemberState = Literal["idle", "ringing", "in_call", "paused", "offline"]

# AMI QueueMember "Status" (app_queue / devicestate numbering).
DEVICE_STATUS = {
    "0": "unknown",
    "1": "not_in_use",
    "2": "in_use",
    "3": "busy",
    "4": "invalid",
    "5": "unavailable",
    "6": "ringing",
    "7": "ringinuse",
    "8": "onhold",
}


def device_name(status: int | None) -> str:
    """The name of an AMI device state number (QueueMember ``Status``)."""
    return DEVICE_STATUS.get(str(status), "unknown") if status is not None else "unknown"


class CallControlError(Exception):
    """Asterisk refused an action or could not be reached; the message says why."""


@dataclass(frozen=True, slots=True)
class QueueMemberState:
    queue: str
    interface: str
    name: str
    device: str  # not_in_use, in_use, ringing, unavailable, ...
    paused: bool
    pause_reason: str
    in_call: bool

    @property
    def state(self) -> MemberState:
        """The operator state shown by the API: idle, ringing, in_call, paused, offline."""
        if self.device in ("unavailable", "invalid", "unknown"):
            return "offline"
        if self.device in ("ringing", "ringinuse"):
            return "ringing"
        if self.in_call or self.device in ("in_use", "busy", "onhold"):
            return "in_call"
        if self.paused:
            return "paused"
        return "idle"


@dataclass(frozen=True, slots=True)
class QueueEntryState:
    """A caller waiting in a queue (QueueStatus QueueEntry)."""

    queue: str
    position: int
    channel: str
    uniqueid: str
    caller_number: str
    wait_s: int


class CallControl(Protocol):
    async def queue_add(self, *, queue: str, interface: str, member_name: str) -> None: ...

    async def queue_remove(self, *, queue: str, interface: str) -> None: ...

    async def queue_pause(
        self, *, queue: str, interface: str, paused: bool, reason: str
    ) -> None: ...

    async def queue_members(self, *, queue: str) -> list[QueueMemberState]: ...

    async def queue_entries(self) -> list[QueueEntryState]: ...

    # ``node``: the PBX node (systemname) that has the channel. Channel names repeat across
    # nodes, so with several nodes an action on a channel goes to its node only.
    async def hangup(self, *, channel: str, node: str | None = None) -> None: ...

    async def redirect(
        self, *, channel: str, context: str, exten: str, node: str | None = None
    ) -> None: ...

    async def reload_sip_accounts(self) -> None: ...

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
        """Ring ``endpoint`` (e.g. ``PJSIP/6001``) for up to ``ring_s``; once answered, run it
        at ``context``/``exten``. Returns once Asterisk queued it: how it ends comes as events
        about the channel, whose Uniqueid is ``channel_id``."""
        ...
