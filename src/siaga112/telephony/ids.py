"""Asterisk's channel ids across several PBX nodes: a node with a ``systemname`` (asterisk.conf)
makes every Uniqueid and Linkedid ``<systemname>-<epoch>.<seq>``, one without makes
``<epoch>.<seq>``. Ids of two nodes with distinct names never collide, and an id says its node."""

from __future__ import annotations

import re

from siaga112.config import NODE_NAME_PATTERN

__all__ = ["is_node_name", "node_of_id"]

_NODE = re.compile(NODE_NAME_PATTERN, re.ASCII)
# The node name may itself hold "-": the epoch and sequence after the last "-" never do.
_PREFIXED_ID = re.compile(r"(?P<node>[a-z][a-z0-9-]{0,30})-[0-9]{1,12}\.[0-9]{1,10}", re.ASCII)


def is_node_name(value: str) -> bool:
    return _NODE.fullmatch(value) is not None


def node_of_id(uniqueid: str) -> str | None:
    """The systemname an Asterisk id starts with; None for an unprefixed id or any other
    text (a callback leg's id chosen by siaga112, junk)."""
    m = _PREFIXED_ID.fullmatch(uniqueid)
    return m.group("node") if m else None
