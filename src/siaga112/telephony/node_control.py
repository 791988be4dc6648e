"""Call control over several Asterisk nodes: one `CallControl` per node behind the one the domain
uses. An action on a channel goes to the node that has it (channel names such as
``PJSIP/carrier-00000001`` repeat across nodes, so it is never sent to all); an operator's queue
membership and pause apply on every node, since every node's queue has every operator
(docs/telephony.md, "Several Asterisk nodes"); a callback leg is placed through the first node
that is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from siaga112.callcontrol.protocol import (
    CallControl,
    CallControlError,
    QueueEntryState,
    QueueMemberState,
)
from siaga112.operators.live import merge_node_states

log = logging.getLogger(__name__)

T = TypeVar("T")


def merge_members(per_node: list[list[QueueMemberState]]) -> list[QueueMemberState]:
    """One state per interface across the nodes asked (those up), merged as the stored states
    are (`merge_node_states`: in a call on any node is in a call, paused only when paused on
    every node that can reach the phone...); the member returned is one whose own state is the
    merged one. Order of first appearance."""
    seen: dict[str, list[QueueMemberState]] = {}
    for members in per_node:
        for member in members:
            seen.setdefault(f"{member.queue}\0{member.interface}", []).append(member)
    merged: list[QueueMemberState] = []
    for members in seen.values():
        state, reason = merge_node_states((m.state, m.pause_reason or None) for m in members)
        merged.append(
            next(
                (m for m in members if m.state == state and (m.pause_reason or None) == reason),
                next((m for m in members if m.state == state), members[0]),
            )
        )
    return merged


class NodeCallControl:
    """`CallControl` over per-node ones. ``is_up(name)`` says whether a node's AMI session is
    logged in now: nodes that are down are skipped where any node will do."""

    def __init__(
        self, *, controls: Mapping[str, CallControl], is_up: Callable[[str], bool]
    ) -> None:
        if not controls:
            raise ValueError("no nodes")
        self.controls = dict(controls)
        self._is_up = is_up

    def _node(self, node: str | None) -> CallControl:
        if node is None:
            if len(self.controls) == 1:
                return next(iter(self.controls.values()))
            raise CallControlError("the call's PBX node is not known: its channel cannot be found")
        control = self.controls.get(node)
        if control is None:
            raise CallControlError(f"no PBX node {node!r} is configured")
        return control

    async def _everywhere(self, what: str, act: Callable[[CallControl], Awaitable[T]]) -> list[T]:
        """``act`` on every node that is up, side by side. Fails only when no node took it: a
        node that is down gets its operators back when it returns (FullyBooted re-applies the
        queue sessions)."""
        names = [n for n in self.controls if self._is_up(n)] or list(self.controls)
        results = await asyncio.gather(
            *(act(self.controls[n]) for n in names), return_exceptions=True
        )
        done: list[T] = []
        errors: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, CallControlError | TimeoutError | OSError):
                    raise result
                errors.append(f"{name}: {result}")
            else:
                done.append(result)
        if errors:
            log.warning("%s failed on %d of %d node(s): %s", what, len(errors), len(names), errors)
        if not done:
            raise CallControlError(f"{what} failed on every node ({'; '.join(errors)})")
        return done

    async def queue_add(self, *, queue: str, interface: str, member_name: str) -> None:
        await self._everywhere(
            "QueueAdd",
            lambda c: c.queue_add(queue=queue, interface=interface, member_name=member_name),
        )

    async def queue_remove(self, *, queue: str, interface: str) -> None:
        await self._everywhere(
            "QueueRemove", lambda c: c.queue_remove(queue=queue, interface=interface)
        )

    async def queue_pause(self, *, queue: str, interface: str, paused: bool, reason: str) -> None:
        await self._everywhere(
            "QueuePause",
            lambda c: c.queue_pause(queue=queue, interface=interface, paused=paused, reason=reason),
        )

    async def queue_members(self, *, queue: str) -> list[QueueMemberState]:
        return merge_members(
            await self._everywhere("QueueStatus", lambda c: c.queue_members(queue=queue))
        )

    async def queue_entries(self) -> list[QueueEntryState]:
        per_node = await self._everywhere("QueueStatus", lambda c: c.queue_entries())
        return [entry for entries in per_node for entry in entries]

    async def hangup(self, *, channel: str, node: str | None = None) -> None:
        await self._node(node).hangup(channel=channel)

    async def redirect(
        self, *, channel: str, context: str, exten: str, node: str | None = None
    ) -> None:
        await self._node(node).redirect(channel=channel, context=context, exten=exten)

    async def reload_sip_accounts(self) -> None:
        await self._everywhere("Reload res_pjsip", lambda c: c.reload_sip_accounts())

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
        names = sorted(self.controls, key=lambda n: not self._is_up(n))
        errors: list[str] = []
        for name in names:
            try:
                await self.controls[name].originate(
                    endpoint=endpoint,
                    context=context,
                    exten=exten,
                    caller_id=caller_id,
                    ring_s=ring_s,
                    channel_id=channel_id,
                    variables=variables,
                )
                return
            except (CallControlError, TimeoutError, OSError) as exc:
                errors.append(f"{name}: {exc}")
        raise CallControlError(f"Originate failed on every node ({'; '.join(errors)})")
