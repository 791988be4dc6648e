"""The webhook document's bytes, signature and retry delays, without a socket."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siaga112.dispatch.lifecycle import DispatchStatus
from siaga112.dispatch.webhooks import (
    FRESHNESS_S,
    WebhookMessage,
    backoff_delay,
    canonical_body,
    idempotency_key,
    sign,
    verify,
)
from siaga112.net import OutboundPolicy, UnsafeDestination

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=8))
def test_body_does_not_depend_on_key_order(payload: dict[str, object]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert canonical_body(payload) == canonical_body(reordered)


def test_signature_covers_timestamp_and_body() -> None:
    body = canonical_body({"message_id": "siaga112-dispatch-1-sent", "text": "Kebakaran"})
    secret = "s" * 40
    ts = "1764750000"
    expected = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sign(secret, ts, body) == f"sha256={expected}"
    sig = sign(secret, ts, body)
    now = 1764750000 + 10
    assert verify(secret, ts, body, sig, now=now)
    assert not verify("t" * 40, ts, body, sig, now=now)
    assert not verify(secret, ts, body + b" ", sig, now=now)
    assert not verify(secret, ts, body, None, now=now)
    # Another timestamp with the same signature: a replay with a fresh header does not verify.
    assert not verify(secret, str(int(ts) + 1), body, sig, now=now)
    # An old request no longer verifies, even with its own signature.
    assert not verify(secret, ts, body, sig, now=int(ts) + FRESHNESS_S + 1)


def test_idempotency_key_is_one_per_dispatch_and_status() -> None:
    keys = {idempotency_key(d, s) for d in (1, 2) for s in DispatchStatus}
    assert len(keys) == 2 * len(DispatchStatus)
    assert idempotency_key(7, DispatchStatus.SENT) == "siaga112-dispatch-7-sent"


@given(attempts=st.integers(min_value=1, max_value=10_000), seed=st.integers())
def test_backoff_grows_is_capped_and_jittered(attempts: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = backoff_delay(attempts, base_s=2.0, max_s=300.0, rng=rng)
    ceiling = min(300.0, 2.0 * 2 ** min(attempts - 1, 30))
    assert ceiling / 2 <= delay <= ceiling


def test_message_schema_is_documented_with_an_example() -> None:
    schema = WebhookMessage.model_json_schema(by_alias=True)
    assert {"schema", "message_id", "incident", "location", "caller", "notes", "dispatch"} <= set(
        schema["properties"]
    )
    example = schema["examples"][0]
    assert WebhookMessage.model_validate(example).message_id == example["message_id"]


def test_own_public_address_is_refused_unless_allowed() -> None:
    own = OutboundPolicy.build(allowed_networks=[], allow_http=False, own_hosts=["8.8.4.4"])
    with pytest.raises(UnsafeDestination) as refused:
        own.check_url("https://8.8.4.4/hook")
    assert refused.value.reason == "own_address"
    assert own.address_refusal("8.8.8.8") is None
    allowed = OutboundPolicy.build(allowed_networks=["8.8.4.4/32"], allow_http=False)
    assert allowed.address_refusal("8.8.4.4") is None
