"""Every operation in the API's OpenAPI schema (so a new endpoint is covered by itself) fed
hostile input: wrong JSON types, out-of-range numbers, NUL and control bytes, huge and
malformed bodies, naive and impossible datetimes in filters, no key, wrong roles, other
agencies' keys. Each answer is a 4xx with a stable `code` (never a 500), and a refused request
leaves every table as it was (fingerprinted before and after)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siaga112.app import create_app
from siaga112.config import Settings
from tests.hostile.conftest import World

_SPEC = create_app(Settings()).openapi()
_COMPONENTS: dict[str, Any] = _SPEC["components"]["schemas"]
_CODE = re.compile(r"^[a-z][a-z_]{2,40}$")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = self.spec.get("requestBody", {}).get("content", {}).get("application/json")
        return _resolve(body["schema"]) if body else None

    def params(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return _resolve(_COMPONENTS[ref.rsplit("/", 1)[1]]) if ref else schema


def _operations() -> list[Operation]:
    ops = []
    for path, methods in _SPEC["paths"].items():
        for method, spec in methods.items():
            if path.startswith("/v1/") or path.startswith("/aml/"):
                ops.append(Operation(method.upper(), path, spec))
    return ops


OPERATIONS = _operations()
WRITES = [op for op in OPERATIONS if op.method != "GET"]
WITH_BODY = [op for op in OPERATIONS if op.body_schema is not None]
WITH_QUERY = [op for op in OPERATIONS if op.params("query")]

# Bodies that the schema gives no example for.
_BASE_BODIES: dict[str, dict[str, Any]] = {
    "TransferRequest": {"agency_id": 1},
    "LegalHoldIn": {"hold": True, "reason": "penyelidikan"},
    "CallbackRequest": {"operator_extension": "7001"},
    "DismissRequest": {"note": "sudah dihubungi"},
    "OperatorCreate": {"extension": "7999", "name": "Operator Uji"},
    "OperatorUpdate": {"name": "Operator Baru"},
    "PauseRequest": {"reason": "break"},
}


def base_body(op: Operation) -> dict[str, Any]:
    ref = op.spec["requestBody"]["content"]["application/json"]["schema"].get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    schema = _resolve({"$ref": ref}) if ref else {}
    examples = schema.get("examples")
    if examples:
        return dict(examples[0])
    return dict(_BASE_BODIES.get(name, {}))


def _types(prop: dict[str, Any]) -> set[str]:
    prop = _resolve(prop)
    found: set[str] = set()
    for option in prop.get("anyOf", [prop]):
        option = _resolve(option)
        if "type" in option:
            found.add(option["type"])
        elif "enum" in option:
            found.add("string")
    return found


# Values no field of the given JSON type may take. Strings get NUL and control bytes too.
_WRONG: dict[str, list[Any]] = {
    "integer": [True, "5", 1.5, 2**63, -(2**63) - 1, 10**30],
    "number": [True, "1.5", 10**400],
    "boolean": ["yes", "true", 1, 0],
    "string": [True, 5, "a\x00b", "a\x01b", "\x1b[31m"],
    "array": ["x", {"a": 1}, [True], [2**63]],
}


def body_cases(op: Operation) -> Iterator[tuple[str, Any]]:
    schema = op.body_schema or {}
    for name, prop in schema.get("properties", {}).items():
        types = _types(prop)
        for kind in sorted(types - {"null"}):
            for value in _WRONG.get(kind, []):
                # A value of another allowed type (e.g. "defaults" | [codes]) is not wrong.
                if isinstance(value, str) and "string" in types and kind != "string":
                    continue
                if isinstance(value, list) and "array" in types and kind != "array":
                    continue
                yield name, value
        yield name, {"$gt": ""}


def path_for(op: Operation, world: World) -> str:
    ids = world.ids

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        values: dict[str, str] = {
            "incident_id": str(ids["incident_id"]),
            "call_id": ids["call_id"],
            "location_id": str(ids["location_id"]),
            "recording_id": "00000000-0000-0000-0000-000000000001",
            "agency_id": str(ids["agency_id"]),
            "extension": ids["extension"],
            "dispatch_id": str(ids["dispatch_id"]),
            "category": "kebakaran",
            "outbox_id": "1",
            "flag_id": str(ids["flag_id"]),
            "number": "+6281234567891",
        }
        return values[name]

    return re.sub(r"\{([a-z_]+)\}", fill, op.path)


def assert_refused(r: Any, what: str) -> None:
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict), what
    assert _CODE.match(str(body.get("code"))), f"{what}: no stable code in {r.text[:200]}"


def _admin_for(op: Operation, world: World) -> dict[str, str]:
    if op.path.startswith("/v1/dispatches"):
        return world.keys["agency_damkar"] if op.method == "PATCH" else world.keys["admin"]
    return world.keys["admin"]


def refusal_problem(r: Any, what: str) -> str | None:
    try:
        assert_refused(r, what)
    except AssertionError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.id)
async def test_wrong_typed_body_fields_are_refused_and_store_nothing(
    world: World, op: Operation
) -> None:
    before = await world.fingerprint()
    problems: list[str] = []
    for field, value in body_cases(op):
        body = base_body(op) | {field: value}
        r = await world.client.request(
            op.method,
            path_for(op, world),
            headers=_admin_for(op, world) | {"content-type": "application/json"},
            content=json.dumps(body),
        )
        if (problem := refusal_problem(r, f"{field}={value!r:.40}")) is not None:
            problems.append(problem)
    assert problems == []
    assert await world.fingerprint() == before


_MALFORMED: list[tuple[str, bytes, str]] = [
    ("invalid json", b'{"a": ', "application/json"),
    ("array", b"[]", "application/json"),
    ("null", b"null", "application/json"),
    ("number", b"1", "application/json"),
    ("nul in json", b'{"\x00": "\x00"}', "application/json"),
    ("not utf-8", b'{"a": "\xff\xfe"}', "application/json"),
    ("huge", b'{"a": "' + b"x" * 200_000 + b'"}', "application/json"),
    ("deep", b"[" * 5000 + b"]" * 5000, "application/json"),
    ("form", b"a=1&b=2", "application/x-www-form-urlencoded"),
    ("unknown field", b'{"__proto__": {"admin": true}}', "application/json"),
]


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.id)
async def test_malformed_bodies_are_refused_and_store_nothing(world: World, op: Operation) -> None:
    before = await world.fingerprint()
    problems: list[str] = []
    for label, raw, ctype in _MALFORMED:
        r = await world.client.request(
            op.method,
            path_for(op, world),
            headers=_admin_for(op, world) | {"content-type": ctype},
            content=raw,
        )
        if (problem := refusal_problem(r, label)) is not None:
            problems.append(problem)
    assert problems == []
    assert await world.fingerprint() == before


_WRONG_QUERY: dict[str, list[str]] = {
    "integer": ["true", str(2**70), "1.5", "-99999999999999999999", "\x00", "1e3"],
    "number": ["true", "nan", "inf", "1e400", "\x00"],
    "boolean": ["yes?", "\x00", "2"],
    "date-time": [
        "2026-01-01T00:00:00",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00Z",
        "not a time",
        "\x00",
    ],
}
# What any string filter gets; answers may be 200 (an empty list), never a 500.
_ANY_QUERY = ["\x00", "%00", "a\x01b", "x" * 5000, "true", str(2**70), "-1", "'; DROP TABLE x"]
_CURSORS = ["eyJ4IjoxfQ", "W251bGwsMV0", "\x00", "x" * 300]


def _query_kind(param: dict[str, Any]) -> str:
    schema = _resolve(param.get("schema", {}))
    for option in schema.get("anyOf", [schema]):
        option = _resolve(option)
        if option.get("format") == "date-time":
            return "date-time"
        if option.get("type") in ("integer", "number", "boolean"):
            return str(option["type"])
    return "string"


def _cursor(ident: Any, at: str = "2026-01-01T00:00:00+00:00") -> str:
    import base64

    raw = json.dumps([at, ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("op", WITH_QUERY, ids=lambda op: op.id)
async def test_query_filters_refuse_bad_values_and_never_fail(world: World, op: Operation) -> None:
    headers = world.keys["admin"]
    if op.path.startswith("/v1/dispatches"):
        headers = world.keys["agency_damkar"]
    url = path_for(op, world)
    if op.path == "/v1/events/stream":
        pytest.skip("a valid request streams forever; its filters: tests/integration/events")
    before = await world.fingerprint()
    problems: list[str] = []
    for param in op.params("query"):
        kind = _query_kind(param)
        name = param["name"]
        for value in _WRONG_QUERY.get(kind, []):
            r = await world.client.get(url, headers=headers, params={name: value})
            if (problem := refusal_problem(r, f"?{name}={value!r:.40}")) is not None:
                problems.append(problem)
        values = list(_ANY_QUERY)
        if name == "cursor":
            values += [
                *_CURSORS,
                _cursor(2**70),
                _cursor(True),
                _cursor("x" * 100),
                _cursor(1, "0001-01-01T00:00:00+05:00"),
                _cursor(1, "2026-01-01T00:00:00"),
                _cursor(None),
            ]
        for value in values:
            r = await world.client.get(url, headers=headers, params={name: value})
            if r.status_code >= 400 and (problem := refusal_problem(r, f"?{name}={value!r:.40}")):
                problems.append(problem)
    assert problems == []
    after = await world.fingerprint()
    # Reads of callers' numbers are audited even when they succeed: only that table may grow.
    after.pop("audit_events")
    before.pop("audit_events")
    assert after == before


async def test_no_key_or_a_bad_key_is_refused_everywhere(world: World) -> None:
    before = await world.fingerprint()
    problems: list[str] = []
    for op in OPERATIONS:
        if op.path.startswith("/aml/"):
            continue  # AML senders sign each message (tests/integration/aml)
        for headers in ({}, {"Authorization": "Bearer s112_" + "x" * 43}, {"Authorization": "x"}):
            r = await world.client.request(op.method, path_for(op, world), headers=headers)
            if r.status_code != 401 or refusal_problem(r, op.id):
                problems.append(f"{op.id}: {r.status_code} {r.text[:100]}")
    assert problems == []
    assert await world.fingerprint() == before


def _role_cases() -> Iterator[tuple[Operation, str]]:
    for op in WRITES:
        if not op.path.startswith("/v1/"):
            continue
        yield op, "integrator"
        if not op.path.startswith("/v1/dispatches/"):
            yield op, "agency_polri"


async def test_writes_refuse_read_only_and_agency_keys(world: World) -> None:
    before = await world.fingerprint()
    problems: list[str] = []
    for op, who in _role_cases():
        body = base_body(op) if op.body_schema is not None else None
        r = await world.client.request(
            op.method, path_for(op, world), headers=world.keys[who], json=body
        )
        if r.status_code != 403 or refusal_problem(r, op.id):
            problems.append(f"{op.id} as {who}: {r.status_code} {r.text[:100]}")
    assert problems == []
    assert await world.fingerprint() == before


async def test_another_agencys_dispatch_is_neither_read_nor_changed(world: World) -> None:
    url = f"/v1/dispatches/{world.ids['dispatch_id']}"
    before = await world.fingerprint()
    polri = world.keys["agency_polri"]
    r = await world.client.get(url, headers=polri)
    assert r.status_code == 404
    assert_refused(r, "GET other agency's dispatch")
    r = await world.client.patch(url, headers=polri, json={"status": "acknowledged"})
    assert r.status_code == 404
    assert_refused(r, "PATCH other agency's dispatch")
    assert await world.fingerprint() == before


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=30)
)


@settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["channel", "category", "priority", "caller_number", "caller_name", "summary"]
        ),
        _SCALARS | st.lists(_SCALARS, max_size=3),
        min_size=1,
    )
)
async def test_any_incident_body_is_stored_whole_or_refused_with_a_code(
    world: World, fields: dict[str, Any]
) -> None:
    """Property: a new incident from arbitrary JSON values is either created (201) or
    refused with a 4xx code, and a refusal stores nothing."""
    before = await world.fingerprint()
    r = await world.client.post("/v1/incidents", headers=world.keys["admin"], json=fields)
    if r.status_code == 201:
        body = r.json()
        assert isinstance(body["priority"], int)
        assert not isinstance(fields.get("priority"), bool)
        return
    assert_refused(r, f"POST /v1/incidents {fields!r:.80}")
    assert await world.fingerprint() == before
