"""The webhook delivery worker: an asyncio task of `siaga112 serve` that drains the outbox.

Delivery guarantees
- A message is written in the transaction of the change it tells of, so it exists exactly when
  the change does (transactional outbox); nothing lives only in memory.
- Claiming: `SELECT ... FOR UPDATE SKIP LOCKED` picks due rows, then moves their
  `next_attempt_at` a lease into the future and commits, so several workers (processes, hosts)
  never take the same row at once, and no database connection is held during HTTP.
- Per dispatch, messages go in order: a row is due only when no earlier undelivered row of the
  same dispatch exists (`acknowledged` never overtakes `sent`).
- A 2xx marks it delivered. Anything else (status, connection refused, timeout) records the
  error and schedules the next attempt with exponential backoff and jitter, forever: an agency
  system that is down for a day gets its messages when it comes back.
- A worker that dies mid-delivery leaves the lease; when it ends, another worker takes the row
  again. A worker that is stopped releases its rows at once. Either way the receiver may see
  the same message twice, always with the same `Idempotency-Key` and the same signed body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from siaga112 import __version__
from siaga112.agencies.models import Agency
from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, system_actor
from siaga112.config import DispatchSettings
from siaga112.dispatch.models import AgencyDispatchSettings, WebhookOutbox
from siaga112.dispatch.service import alert_unacknowledged
from siaga112.dispatch.webhooks import (
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    backoff_delay,
    canonical_body,
    sign,
)
from siaga112.incidents.models import IncidentEvent
from siaga112.metrics import Metrics
from siaga112.net import OutboundPolicy, UnsafeDestination, pinned_client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    agency_id: int
    agency_code: str
    dispatch_id: int
    incident_id: int | None
    event: str
    key: str
    payload: dict[str, Any]
    attempts: int
    url: str | None
    secret: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    seconds: float


class DeliveryWorker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: DispatchSettings,
        metrics: Metrics,
        outbound: OutboundPolicy | None = None,
        actor: Actor | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        # Default: public https addresses only (the service passes its configured policy).
        self.outbound = outbound or OutboundPolicy()
        self.settings = settings
        self.metrics = metrics
        self.actor = actor or system_actor("dispatch-worker")
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._inflight: set[int] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._release_inflight()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            busy = False
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be restarting; the rows wait for us there.
                self.metrics.inc("webhook_worker_errors")
                log.exception("webhook worker round failed")
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            self._wake.clear()

    # ------------------------------------------------------------ one round

    async def run_once(self) -> bool:
        """Delivers what is due and raises unacknowledged alerts. True when a full batch was
        claimed (there may be more right away)."""
        claimed = await self._claim()
        if claimed:
            # Left in the set when cancelled mid-way: stop() releases them.
            self._inflight.update(c.id for c in claimed)
            await asyncio.gather(*(self._deliver_and_record(c) for c in claimed))
        await self._watchdog()
        return len(claimed) >= self.settings.batch_size

    async def _claim(self) -> list[Claimed]:
        earlier = aliased(WebhookOutbox)
        blocked = (
            select(earlier.id)
            .where(
                earlier.dispatch_id == WebhookOutbox.dispatch_id,
                earlier.delivered_at.is_(None),
                earlier.id < WebhookOutbox.id,
            )
            .exists()
        )
        async with self.sessionmaker() as session, session.begin():
            ids = list(
                (
                    await session.scalars(
                        select(WebhookOutbox.id)
                        .where(
                            WebhookOutbox.delivered_at.is_(None),
                            WebhookOutbox.next_attempt_at <= func.now(),
                            ~blocked,
                        )
                        .order_by(WebhookOutbox.next_attempt_at, WebhookOutbox.id)
                        .limit(self.settings.batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not ids:
                return []
            lease = datetime.now(UTC) + timedelta(seconds=self.settings.claim_lease_s)
            await session.execute(
                update(WebhookOutbox)
                .where(WebhookOutbox.id.in_(ids))
                .values(attempts=WebhookOutbox.attempts + 1, next_attempt_at=lease)
            )
            rows = (
                await session.execute(
                    select(
                        WebhookOutbox,
                        Agency.code,
                        AgencyDispatchSettings.webhook_url,
                        AgencyDispatchSettings.webhook_secret,
                    )
                    .join(Agency, Agency.id == WebhookOutbox.agency_id)
                    .outerjoin(
                        AgencyDispatchSettings,
                        AgencyDispatchSettings.agency_id == WebhookOutbox.agency_id,
                    )
                    .where(WebhookOutbox.id.in_(ids))
                    .order_by(WebhookOutbox.id)
                    .execution_options(populate_existing=True)
                )
            ).all()
            out = []
            for row, code, url, secret in rows:
                incident = row.payload.get("incident", {})
                out.append(
                    Claimed(
                        id=row.id,
                        agency_id=row.agency_id,
                        agency_code=code,
                        dispatch_id=row.dispatch_id,
                        incident_id=incident.get("id") if isinstance(incident, dict) else None,
                        event=row.event,
                        key=row.idempotency_key,
                        payload=row.payload,
                        attempts=row.attempts,
                        url=url,
                        secret=secret,
                    )
                )
            return out

    async def _deliver_and_record(self, message: Claimed) -> None:
        try:
            outcome = await self.deliver(message)
            await self._record(message, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and another round retries; never lose the row.
            self.metrics.inc("webhook_worker_errors")
            log.exception("recording webhook outbox %d failed", message.id)
        self._inflight.discard(message.id)

    async def deliver(self, message: Claimed) -> Outcome:
        """One POST. Bounded in time as a whole, not only per network read."""
        started = time.monotonic()
        if not message.url or not message.secret:
            return Outcome(False, None, "agency has no webhook URL or secret", 0.0)
        body = canonical_body(message.payload)
        try:
            # Again at every attempt: the name may resolve elsewhere than when it was set.
            target = await self.outbound.resolve(message.url)
        except UnsafeDestination as exc:
            self.metrics.inc("webhook_destination_refused")
            return Outcome(False, None, f"destination refused: {exc.reason}", 0.0)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(message.secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            IDEMPOTENCY_HEADER: message.key,
            EVENT_HEADER: message.event,
        }
        try:
            async with (
                asyncio.timeout(self.settings.webhook_timeout_s),
                pinned_client(
                    target,
                    timeout=httpx.Timeout(self.settings.webhook_timeout_s),
                    headers={"User-Agent": f"siaga112/{__version__}"},
                ) as client,
                client.stream("POST", message.url, content=body, headers=headers) as response,
            ):
                code = response.status_code
        except TimeoutError:
            return Outcome(False, None, "timeout", time.monotonic() - started)
        except httpx.HTTPError as exc:
            # The exception type only: its text may repeat the URL, which can hold a token.
            return Outcome(False, None, f"{type(exc).__name__}", time.monotonic() - started)
        elapsed = time.monotonic() - started
        if 200 <= code < 300:
            return Outcome(True, code, None, elapsed)
        return Outcome(False, code, f"HTTP {code}", elapsed)

    async def _record(self, message: Claimed, outcome: Outcome) -> None:
        async with self.sessionmaker() as session, session.begin():
            if outcome.ok:
                result = await session.execute(
                    update(WebhookOutbox)
                    .where(WebhookOutbox.id == message.id, WebhookOutbox.delivered_at.is_(None))
                    .values(
                        delivered_at=func.now(),
                        last_status_code=outcome.status_code,
                        last_error=None,
                    )
                    .returning(WebhookOutbox.id)
                )
                if result.scalar_one_or_none() is None:
                    return  # another worker recorded it first (after a lease ran out)
                self.metrics.inc("webhook_deliveries")
                self.metrics.observe("webhook_delivery", outcome.seconds)
                data = {
                    "dispatch_id": message.dispatch_id,
                    "agency": message.agency_code,
                    "event": message.event,
                    "attempts": message.attempts,
                }
                await self._story(session, message, "webhook_delivered", data)
                return
            delay = backoff_delay(
                message.attempts,
                base_s=self.settings.retry_base_s,
                max_s=self.settings.retry_max_s,
            )
            await session.execute(
                update(WebhookOutbox)
                .where(WebhookOutbox.id == message.id, WebhookOutbox.delivered_at.is_(None))
                .values(
                    next_attempt_at=func.now() + timedelta(seconds=delay),
                    last_error=(outcome.error or "failed")[:500],
                    last_status_code=outcome.status_code,
                )
            )
            self.metrics.inc("webhook_delivery_failures")
            log.warning(
                "webhook to %s failed (outbox %d, attempt %d): %s; next in %.1fs",
                message.agency_code,
                message.id,
                message.attempts,
                outcome.error,
                delay,
            )
            if message.attempts == 1:
                # Once per message: the timeline shows that delivery is struggling, the
                # outbox API shows every detail.
                data = {
                    "dispatch_id": message.dispatch_id,
                    "agency": message.agency_code,
                    "event": message.event,
                    "error": outcome.error,
                }
                await self._story(session, message, "webhook_failing", data)

    async def _story(
        self, session: AsyncSession, message: Claimed, kind: str, data: dict[str, Any]
    ) -> None:
        if message.incident_id is not None:
            session.add(
                IncidentEvent(
                    incident_id=message.incident_id, actor=self.actor.label, kind=kind, data=data
                )
            )
        await record_audit(
            session=session,
            actor=self.actor,
            action=f"webhook.{kind.removeprefix('webhook_')}",
            entity_type="webhook_outbox",
            entity_id=str(message.id),
            before=None,
            after=data,
        )

    async def _watchdog(self) -> None:
        async with self.sessionmaker() as session, session.begin():
            alerted = await alert_unacknowledged(
                session=session, timeout_s=self.settings.ack_timeout_s, actor=self.actor
            )
        if alerted:
            self.metrics.inc("dispatch_unacknowledged", len(alerted))
            log.warning("dispatches not acknowledged in time: %s", alerted)

    async def _release_inflight(self) -> None:
        """On a clean stop, rows being delivered are due again at once (not after the lease)."""
        if not self._inflight:
            return
        ids = list(self._inflight)
        self._inflight.clear()
        try:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    update(WebhookOutbox)
                    .where(WebhookOutbox.id.in_(ids), WebhookOutbox.delivered_at.is_(None))
                    .values(next_attempt_at=func.now())
                )
        except Exception:
            log.warning("could not release %d claimed webhook messages; the lease will", len(ids))
