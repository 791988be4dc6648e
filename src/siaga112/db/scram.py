"""A PostgreSQL SCRAM-SHA-256 password verifier, computed on the client.

``CREATE ROLE ... PASSWORD '<verifier>'`` stores the verifier as given, so the clear password never
reaches the server: not in a DDL-logging server's log (``log_statement = ddl``), nor in
``pg_stat_activity`` while the statement runs. The server builds the same string itself from a
clear password (src/common/scram-common.c: ``scram_build_secret``); RFC 5802 and RFC 7677 define
the keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

# PostgreSQL's default (scram_iterations, PostgreSQL 16; fixed in 15).
ITERATIONS = 4096
SALT_BYTES = 16

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes for ``password``: its SASLprep (RFC 4013) form, or the raw UTF-8
    bytes where SASLprep fails (PostgreSQL's ``pg_saslprep`` falls back so, and a pure-ASCII
    password is always taken as it is)."""
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(check(c) for c in prepared for check in _PROHIBITED):
        return raw
    rand_al = [stringprep.in_table_d1(c) for c in prepared]
    if any(rand_al) and (
        any(stringprep.in_table_d2(c) for c in prepared) or not (rand_al[0] and rand_al[-1])
    ):
        return raw
    return prepared.encode("utf-8")


def verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64), as pg_authid keeps
    it; a new random salt unless one is given."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def parse_verifier(value: str) -> tuple[int, bytes] | None:
    """The iterations and salt of a stored SCRAM-SHA-256 verifier, or None if it is not one."""
    try:
        scheme, rest = value.split("$", 1)
        head, _keys = rest.split("$", 1)
        iterations, salt = head.split(":", 1)
        if scheme != "SCRAM-SHA-256":
            return None
        return int(iterations), base64.b64decode(salt, validate=True)
    except ValueError:
        return None
