from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict

from siaga112.schemas import Code, Output, PhoneNumber, ShortText, StrictInput


class AgencyKind(StrEnum):
    FIRE = "fire"
    DISASTER = "disaster"
    HEALTH = "health"
    HOSPITAL = "hospital"
    PUBLIC_ORDER = "public_order"
    POLICE = "police"
    MILITARY = "military"
    RED_CROSS = "red_cross"
    SOCIAL_PROTECTION = "social_protection"
    TRANSPORT = "transport"
    OTHER = "other"


class AgencyCreate(StrictInput):
    code: Code
    name: ShortText
    kind: AgencyKind
    phone: PhoneNumber | None = None
    active: bool = True

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "damkar_bekasi_timur",
                    "name": "Damkar Pos Bekasi Timur",
                    "kind": "fire",
                    "phone": "0218801234",
                }
            ]
        }
    )


class AgencyUpdate(StrictInput):
    name: ShortText | None = None
    kind: AgencyKind | None = None
    phone: PhoneNumber | None = None
    active: bool | None = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"phone": "0218805678", "active": True}]}
    )


class AgencyOut(Output):
    id: int
    code: str
    name: str
    kind: str
    phone: str | None
    active: bool
    created_at: datetime
    updated_at: datetime
