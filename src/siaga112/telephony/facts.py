"""Turns what the telephony edge parsed into the domain's `CallFacts`."""

from __future__ import annotations

from collections.abc import Mapping

from siaga112.calls.recorder import CallFacts
from siaga112.telephony.agi_request import IncomingCall, parse_incoming_call


def facts_from(call: IncomingCall) -> CallFacts:
    return CallFacts(
        uniqueid=call.uniqueid,
        linkedid=call.linkedid,
        channel=call.channel or None,
        caller_number=call.caller_number or None,
        caller_name=call.caller_name or None,
        caller_e164=call.caller_e164,
        asserted_number=call.asserted_number,
        presentation=call.presentation or None,
        caller_id_available=call.caller_id_available,
        callback_number=call.callback_number,
        dialled_number=call.dialled_number or None,
        pai=call.pai or None,
        pani=call.pani or None,
        geolocation=call.geolocation or None,
        geoloc_effective=call.geoloc_effective or None,
        geoloc_method=call.geoloc_method or None,
        node=call.node,
    )


def facts_from_env(env: Mapping[str, str]) -> CallFacts:
    """Facts from AGI-style variables, also when they were rebuilt from AMI or the CDR file,
    so that caller-ID rules live in one parser."""
    return facts_from(parse_incoming_call(env))
