"""What Asterisk's rendered configuration and siaga112's telephony adapters agree on: the
FastAGI request, the AMI events that pass the manager's filter, the CDR file's columns and the
recordings' names. `siaga112.pbxconf` renders them into the PBX's files; the adapters read them.

FastAGI contract of the rendered dialplan (``agi://<agi.host>:<agi.port>/incoming``), one round
trip for all headers; every header value is base64 (empty when the header is absent)::

    agi_arg_1  dialled number (112 or an alias number)
    agi_arg_2  base64(P-Asserted-Identity)
    agi_arg_3  base64(P-Access-Network-Info)
    agi_arg_4  base64(Geolocation header)
    agi_arg_5  caller presentation, ${CALLERID(pres)} (allowed_not_screened, prohib, ...)
    agi_arg_6  base64(${GEOLOC_PROFILE(effective_location)}), empty without a location
    agi_arg_7  ${GEOLOC_PROFILE(method)} (e.g. gps), empty without a location
    agi_arg_8  ${SYSTEMNAME} (asterisk.conf): the node; empty on an unnamed single node

The handler may set ``SIAGA112_INCIDENT_ID``, ``SIAGA112_QUEUE`` (empty: default queue) and
``SIAGA112_PRIORITY`` (queue priority). The queue step runs whatever the AGI step did.

Time budget of the AGI step: res_agi has no timeout of its own for a connected FastAGI server
(``run_agi`` waits with ``ms = -1``). The dialplan therefore arms ``TIMEOUT(absolute)`` for
``agi.budget_ms`` together with ``AGIEXITONHANGUP=yes``: when the budget runs out the channel is
soft-hung-up with the *timeout* cause, AGI() returns (the server gets ``HANGUP``), and the
dialplan continues at the ``T`` extension, which clears the timeout and goes on to the queue.
A closed port fails at once; an unreachable host fails after at most 2 s (``MAX_AGI_CONNECT``,
compiled in) -- both with ``AGISTATUS=FAILURE``, and the call queues.
"""

from __future__ import annotations

from siaga112.callbacks.legs import CALLBACK_ID_PREFIX
from siaga112.config import CDR_FILE_NAME, RECORDINGS_SUBDIR
from siaga112.telephony.ami_events import MEMBER_CHANGE_EVENTS, USED_EVENTS

__all__ = [
    "AMI_EVENTS",
    "AMI_QUEUE_EVENTS",
    "AMI_SCOPED_EVENTS",
    "CDR_CSV_FIELDS",
    "CDR_FILE_NAME",
    "RECORDINGS_SUBDIR",
    "RECORDING_NAME",
]

# Events that pass the AMI eventfilter: exactly those the adapters parse (one list, kept by
# siaga112.telephony.ami_events), nothing else; the queue member events only as below.
AMI_EVENTS: tuple[str, ...] = tuple(e for e in USED_EVENTS if e not in MEMBER_CHANGE_EVENTS)

# Events that pass only for the operators' queue (``PbxSettings.queue_name``; advanced
# eventfilter: header Queue, exact): operator states follow that queue alone. Every operator is
# a member of the low-priority queue too, and each change of a phone's state is one event per
# queue; the other queues' copies (and the benchmark queue's) never leave Asterisk.
AMI_QUEUE_EVENTS: tuple[str, ...] = MEMBER_CHANGE_EVENTS

# Events that pass only for some channels (advanced eventfilter: name, header, starts_with):
# DialEnd of callback legs, whose Uniqueid siaga112 chose. app_queue raises DialEnd for every
# member it rings, so an unscoped DialEnd would grow the stream with every 112 call.
AMI_SCOPED_EVENTS: tuple[tuple[str, str, str], ...] = (("DialEnd", "Uniqueid", CALLBACK_ID_PREFIX),)

# Recordings land in <astspooldir>/monitor/RECORDINGS_SUBDIR/YYYY/MM/DD/<Uniqueid>-<epoch>.wav:
# MixMonitor makes the directories; the date is the call's arrival (UTC), the epoch the
# operator's answer. The name is what links a file to its call, also one that siaga112 never
# heard of (siaga112.recordings.files.parse_recording_name).
RECORDING_NAME = RECORDINGS_SUBDIR + "/${STRFTIME(${EPOCH},UTC,%Y/%m/%d)}/${UNIQUEID}-^{EPOCH}"

# Column order of the CDR CSV (cdr_custom advanced mapping). start/answer/end are epoch seconds
# (double, 0 when absent); duration/billsec whole seconds. ``siaga112_*`` columns are set by
# the dialplan with Set(CDR(...)). A call gives several records (one per queue member rung,
# then one for the hang-up handler); the one with the highest ``sequence`` per ``linkedid`` is
# the last and carries ``siaga112_operator`` (the member interface that answered, if any).
CDR_CSV_FIELDS: tuple[str, ...] = (
    "uniqueid",
    "linkedid",
    "sequence",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "clid",
    "src",
    "dst",
    "dcontext",
    "channel",
    "dstchannel",
    "lastapp",
    "siaga112_dialled",
    "siaga112_pres",
    "siaga112_pai",
    "siaga112_pani",
    "siaga112_geolocation",
    "siaga112_location",
    "siaga112_agistatus",
    "siaga112_incident",
    "siaga112_queue",
    "siaga112_queuestatus",
    "siaga112_operator",
    # Appended later (older lines end before them, siaga112.telephony.cdr reads both): when the
    # caller entered the queue and when an operator answered, epoch seconds with microseconds.
    "siaga112_enqueued",
    "siaga112_answered",
)
