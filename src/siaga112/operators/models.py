"""An operator, its last live state, and the PJSIP realtime rows Asterisk reads its SIP account
from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base, TimestampMixin


class Operator(TimestampMixin, Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    extension: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    # What the operator asked for (kept across Asterisk restarts and re-applied from here).
    logged_in: Mapped[bool] = mapped_column(server_default=text("false"))
    paused: Mapped[bool] = mapped_column(server_default=text("false"))
    pause_reason: Mapped[str | None] = mapped_column(String(80))


class PsEndpoint(Base):
    __tablename__ = "ps_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    transport: Mapped[str | None] = mapped_column(String(40))
    aors: Mapped[str | None] = mapped_column(String(200))
    auth: Mapped[str | None] = mapped_column(String(40))
    context: Mapped[str | None] = mapped_column(String(40))
    disallow: Mapped[str | None] = mapped_column(String(200))
    allow: Mapped[str | None] = mapped_column(String(200))
    direct_media: Mapped[str | None] = mapped_column(String(3))
    rtp_symmetric: Mapped[str | None] = mapped_column(String(3))
    force_rport: Mapped[str | None] = mapped_column(String(3))
    rewrite_contact: Mapped[str | None] = mapped_column(String(3))
    callerid: Mapped[str | None] = mapped_column(String(200))
    # Never set by siaga112; Asterisk's MWI start-up query names it (see the baseline migration).
    mailboxes: Mapped[str | None] = mapped_column(String(40))


class PsAuth(Base):
    __tablename__ = "ps_auths"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    auth_type: Mapped[str | None] = mapped_column(String(20))
    username: Mapped[str | None] = mapped_column(String(40))
    realm: Mapped[str | None] = mapped_column(String(40))
    md5_cred: Mapped[str | None] = mapped_column(String(40))


class PsAor(Base):
    __tablename__ = "ps_aors"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    max_contacts: Mapped[int | None]
    remove_existing: Mapped[str | None] = mapped_column(String(3))
    # Never set by siaga112 (operators register); Asterisk's qualify start-up query names it.
    contact: Mapped[str | None] = mapped_column(String(255))


class OperatorLiveState(Base):
    """Each operator's last state on each PBX node as that node's Asterisk reported it (the
    de-duplication point of `operator_state_changed` events, across restarts and across
    siaga112 processes; the events carry the state merged across nodes, operators/live.py)."""

    __tablename__ = "operator_live_states"

    extension: Mapped[str] = mapped_column(String(20), primary_key=True)
    # The node's name as calls.node has it (`pbx` for the one node of a deployment without
    # `pbx.nodes`).
    node: Mapped[str] = mapped_column(String(31), primary_key=True)
    # idle, ringing, in_call, paused, offline, logged_out
    state: Mapped[str] = mapped_column(String(20))
    pause_reason: Mapped[str | None] = mapped_column(String(80))
    changed_at: Mapped[datetime]
