"""One operator's state across PBX nodes (operators/live.py, `merge_node_states`), as an
operator and a supervisor expect it: talking anywhere is talking, paused only when no node
that can reach the phone could offer a call, logged in while a member anywhere. Nodes that are
down are left out by the callers (docs/telephony.md, "Operators across nodes")."""

from __future__ import annotations

import pytest

from siaga112.operators.live import NodeState, merge_node_states


@pytest.mark.parametrize(
    ("nodes", "merged"),
    [
        ([], ("logged_out", None)),
        ([("logged_out", None), ("logged_out", None)], ("logged_out", None)),
        # A member of one node's queue only (the other's QueueAdd failed, or it was down).
        ([("idle", None), ("logged_out", None)], ("idle", None)),
        ([("logged_out", None), ("paused", "istirahat")], ("paused", "istirahat")),
        # In a call, or ringing, on any node: whatever the other says.
        ([("idle", None), ("in_call", None)], ("in_call", None)),
        ([("paused", "rapat"), ("in_call", None)], ("in_call", None)),
        ([("ringing", None), ("in_call", None)], ("in_call", None)),
        ([("offline", None), ("ringing", None)], ("ringing", None)),
        ([("paused", "rapat"), ("ringing", None)], ("ringing", None)),
        # Paused only when paused on every node that reaches the phone.
        ([("paused", "istirahat"), ("idle", None)], ("idle", None)),
        ([("idle", None), ("paused", "istirahat")], ("idle", None)),
        ([("paused", "istirahat"), ("paused", "istirahat")], ("paused", "istirahat")),
        ([("paused", None), ("paused", "rapat")], ("paused", "rapat")),
        ([("paused", "rapat"), ("offline", None)], ("paused", "rapat")),
        # Unreachable everywhere it is a member: offline; reachable somewhere: that node's.
        ([("offline", None), ("offline", None)], ("offline", None)),
        ([("offline", None), ("logged_out", None)], ("offline", None)),
        ([("offline", None), ("idle", None)], ("idle", None)),
        # One node only: its state, as a single-node deployment always had it.
        ([("paused", "rapat")], ("paused", "rapat")),
        ([("idle", None)], ("idle", None)),
    ],
)
def test_merged_state(nodes: list[NodeState], merged: NodeState) -> None:
    assert merge_node_states(nodes) == merged
    # The state does not depend on the nodes' order (a reason may: the first paused node's).
    assert merge_node_states(reversed(nodes))[0] == merged[0]
