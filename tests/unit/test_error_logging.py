"""Unhandled database errors answer 500 `internal_error` and leave no caller data in the log:
neither the statement's parameters nor the driver's message (which can quote them)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from siaga112.errors import install_error_handlers

NUMBER = "+6281234567890"


async def test_database_error_is_logged_without_parameters_or_driver_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise IntegrityError(
            "INSERT INTO calls (caller_number, lat) VALUES ($1, $2)",
            {"caller_number": NUMBER, "lat": -6.28211},
            Exception(f"Key (caller_number)=({NUMBER}) already exists; lat -6.28211"),
        )

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/boom")
    assert (r.status_code, r.json()["code"]) == (500, "internal_error")
    text = "\n".join(
        rec.getMessage() + (str(rec.exc_info[1]) if rec.exc_info else "") for rec in caplog.records
    )
    assert "IntegrityError" in text
    assert NUMBER not in text
    assert "6.28211" not in text


def test_engines_hide_statement_parameters() -> None:
    from siaga112.config import Settings
    from siaga112.db.session import make_engine

    engine = make_engine(Settings())
    assert engine.sync_engine.hide_parameters is True
