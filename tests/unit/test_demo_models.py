"""`siaga112 demo call` creates an API key in a process of its own: every model it touches must
be mapped there, without whatever a test session happened to import first."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_maps_every_model_it_needs_on_its_own() -> None:
    code = (
        "import siaga112_sandbox.demo\n"
        "from sqlalchemy.orm import configure_mappers\n"
        "from siaga112.auth.models import ApiKey\n"
        "configure_mappers()\n"
        "ApiKey.__table__.foreign_keys and [fk.column for fk in ApiKey.__table__.foreign_keys]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
