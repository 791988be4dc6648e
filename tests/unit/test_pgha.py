"""The sandbox's primary/replica pair names itself the way siaga112 connects to it."""

from __future__ import annotations

from pathlib import Path

from siaga112.config import Settings
from siaga112.db.url import parse
from siaga112_sandbox import pgha


def test_the_pair_url_is_multi_host_and_wants_the_writable_one() -> None:
    pair = pgha.PgHa(base=Path("/nowhere"), ports=(5441, 5442))
    target = parse(pair.url("siaga112"))
    assert target.hosts == (("127.0.0.1", 5441), ("127.0.0.1", 5442))
    assert dict(target.query) == {"target_session_attrs": "read-write"}
    assert target.database == "siaga112"


def test_each_state_directory_has_its_own_pair_out_of_roots_home(tmp_path: Path) -> None:
    a = pgha.for_settings(Settings(state_dir=tmp_path / "a"))
    b = pgha.for_settings(Settings(state_dir=tmp_path / "b"))
    assert a.base != b.base
    assert a.base.parent == Path("/var/lib/postgresql")
    assert pgha.for_settings(Settings(state_dir=tmp_path / "a")).base == a.base
