"""The API's way to the call control the composition root gave the app (None without
telephony: `siaga112 serve --api-only`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from siaga112.callcontrol.protocol import CallControl


async def _control(request: Request) -> CallControl | None:
    control: CallControl | None = getattr(request.app.state, "call_control", None)
    return control


Control = Annotated[CallControl | None, Depends(_control)]
