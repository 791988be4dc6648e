"""Service-level figures computed in PostgreSQL over the calls table.

Answer time is from the moment Asterisk created the caller's channel (`offered_at`, the INVITE
arriving) to an operator's answer (`answered_at`), not Asterisk's own answer-first pick-up.
"Answered within N s" is a share of all calls offered, as NENA-STA-020.1 words it ("90% of all
calls arriving ... answered within 15 seconds"); calls abandoned before an answer count against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

THRESHOLDS_S = (10, 15, 20)

_FIGURES = """
    count(*) AS offered,
    count(c.answered_at) AS answered,
    count(*) FILTER (WHERE c.state = 'abandoned') AS abandoned,
    avg(extract(epoch FROM c.answered_at - c.offered_at)) AS answer_mean_s,
    percentile_cont(0.9) WITHIN GROUP (
        ORDER BY extract(epoch FROM c.answered_at - c.offered_at)) AS answer_p90_s,
    percentile_cont(0.95) WITHIN GROUP (
        ORDER BY extract(epoch FROM c.answered_at - c.offered_at)) AS answer_p95_s,
    count(*) FILTER (WHERE c.answered_at - c.offered_at <= interval '10 seconds') AS within_10,
    count(*) FILTER (WHERE c.answered_at - c.offered_at <= interval '15 seconds') AS within_15,
    count(*) FILTER (WHERE c.answered_at - c.offered_at <= interval '20 seconds') AS within_20,
    count(*) FILTER (WHERE c.caller_id_available IS FALSE) AS without_caller_id,
    count(*) FILTER (WHERE i.classification IN ('prank', 'ghost')) AS false_calls,
    count(*) FILTER (WHERE i.classification IS NOT NULL) AS classified
"""

_FROM = """
FROM calls c LEFT JOIN incidents i ON i.id = c.incident_id
WHERE c.offered_at >= :start AND c.offered_at < :end
"""


@dataclass(frozen=True, slots=True)
class Figures:
    offered: int
    answered: int
    abandoned: int
    abandon_rate: float | None
    answer_mean_s: float | None
    answer_p90_s: float | None
    answer_p95_s: float | None
    answered_within: dict[str, float | None]
    without_caller_id: int
    false_call_share: float | None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _figures(row: Any) -> Figures:
    return Figures(
        offered=row.offered,
        answered=row.answered,
        abandoned=row.abandoned,
        abandon_rate=_share(row.abandoned, row.offered),
        answer_mean_s=_round(row.answer_mean_s),
        answer_p90_s=_round(row.answer_p90_s),
        answer_p95_s=_round(row.answer_p95_s),
        answered_within={
            f"{t}s": _share(getattr(row, f"within_{t}"), row.offered) for t in THRESHOLDS_S
        },
        without_caller_id=row.without_caller_id,
        false_call_share=_share(row.false_calls, row.classified),
    )


@dataclass(frozen=True, slots=True)
class HourFigures:
    hour: datetime
    figures: Figures


@dataclass(frozen=True, slots=True)
class OperatorFigures:
    operator: str
    answered: int
    answer_mean_s: float | None
    talk_mean_s: float | None


@dataclass(frozen=True, slots=True)
class ServiceLevels:
    start: datetime
    end: datetime
    timezone: str
    total: Figures
    by_hour: list[HourFigures]
    by_operator: list[OperatorFigures]


async def service_levels(
    *, session: AsyncSession, start: datetime, end: datetime, timezone: str
) -> ServiceLevels:
    params = {"start": start, "end": end, "tz": timezone}
    total = (await session.execute(text(f"SELECT {_FIGURES} {_FROM}"), params)).one()
    hours = (
        await session.execute(
            text(
                f"SELECT date_trunc('hour', c.offered_at AT TIME ZONE :tz) AS hour, {_FIGURES} "
                f"{_FROM} GROUP BY 1 ORDER BY 1"
            ),
            params,
        )
    ).all()
    operators = (
        await session.execute(
            text(
                """
SELECT c.operator,
       count(*) AS answered,
       avg(extract(epoch FROM c.answered_at - c.offered_at)) AS answer_mean_s,
       avg(extract(epoch FROM c.ended_at - c.answered_at)) AS talk_mean_s
FROM calls c
WHERE c.offered_at >= :start AND c.offered_at < :end
  AND c.operator IS NOT NULL AND c.answered_at IS NOT NULL
GROUP BY c.operator ORDER BY c.operator
"""
            ),
            params,
        )
    ).all()
    return ServiceLevels(
        start=start,
        end=end,
        timezone=timezone,
        total=_figures(total),
        by_hour=[HourFigures(hour=r.hour, figures=_figures(r)) for r in hours],
        by_operator=[
            OperatorFigures(
                operator=r.operator,
                answered=r.answered,
                answer_mean_s=_round(r.answer_mean_s),
                talk_mean_s=_round(r.talk_mean_s),
            )
            for r in operators
        ],
    )
