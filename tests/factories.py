"""Builders of domain values the tests share."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from siaga112.calls.recorder import CallFacts


def call_facts(uniqueid: str, **changes: Any) -> CallFacts:
    """A caller leg as the AGI step sees it: a known number (081234567890, +6281234567890 in
    E.164), no headers, 112; ``changes`` replace any field."""
    base = CallFacts(
        uniqueid=uniqueid,
        linkedid=uniqueid,
        channel="PJSIP/carrier-1",
        caller_number="081234567890",
        caller_name=None,
        caller_e164="+6281234567890",
        asserted_number=None,
        presentation=None,
        caller_id_available=True,
        callback_number="+6281234567890",
        dialled_number="112",
        pai=None,
        pani=None,
        geolocation=None,
    )
    return replace(base, **changes)
