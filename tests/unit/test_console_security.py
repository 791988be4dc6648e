"""The console's Content-Security-Policy: nothing from another origin, no inline code, no
framing; a configured tile server is allowed for images only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from siaga112.config import ConsoleSettings
from siaga112.console.security import content_security_policy


def _directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_offline_policy_is_self_only() -> None:
    d = _directives(content_security_policy(None))
    assert d["default-src"] == "'self'"
    assert d["script-src"] == "'self'"
    assert d["style-src"] == "'self'"
    assert d["connect-src"] == "'self'"
    assert d["img-src"] == "'self' data:"
    assert d["frame-ancestors"] == "'none'"
    assert d["object-src"] == "'none'"
    assert "unsafe" not in content_security_policy(None)


def test_a_tile_server_is_allowed_for_images_only() -> None:
    d = _directives(content_security_policy("https://{s}.tiles.example.id/{z}/{x}/{y}.png"))
    assert d["img-src"] == "'self' data: https://*.tiles.example.id"
    assert d["script-src"] == "'self'"
    assert d["connect-src"] == "'self'"
    d = _directives(content_security_policy("https://tiles.example.id/{z}/{x}/{y}.png"))
    assert d["img-src"] == "'self' data: https://tiles.example.id"


@pytest.mark.parametrize(
    "url", ["http://tiles.example.id/{z}/{x}/{y}.png", "https://x/'; script-src *", "javascript:1"]
)
def test_tile_url_must_be_a_plain_https_template(url: str) -> None:
    with pytest.raises(ValidationError):
        ConsoleSettings(tile_url=url)
