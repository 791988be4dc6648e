"""Counters and latency samples of the telephony side, rendered in Prometheus text format.

Small on purpose: the hot paths only add to a counter or append to a bounded deque.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable


class Metrics:
    def __init__(self, *, samples: int = 20_000) -> None:
        self.counters: Counter[str] = Counter()
        self._latency: dict[str, deque[float]] = {}
        self._samples = samples

    def inc(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def observe(self, name: str, seconds: float) -> None:
        bucket = self._latency.get(name)
        if bucket is None:
            bucket = self._latency[name] = deque(maxlen=self._samples)
        bucket.append(seconds)

    def quantile(self, name: str, q: float) -> float | None:
        values = sorted(self._latency.get(name, ()))
        return quantile(values, q)

    def render(self) -> str:
        lines: list[str] = []
        for name, value in sorted(self.counters.items()):
            lines.append(f"# TYPE siaga112_{name}_total counter")
            lines.append(f"siaga112_{name}_total {value}")
        for name, bucket in sorted(self._latency.items()):
            values = sorted(bucket)
            lines.append(f"# TYPE siaga112_{name}_seconds summary")
            for q in (0.5, 0.9, 0.99):
                v = quantile(values, q)
                if v is not None:
                    lines.append(f'siaga112_{name}_seconds{{quantile="{q}"}} {v:.6f}')
            lines.append(f"siaga112_{name}_seconds_count {len(values)}")
        return "\n".join(lines) + "\n"


def quantile(sorted_values: Iterable[float], q: float) -> float | None:
    """Nearest-rank quantile of already sorted values; None for no values."""
    values = list(sorted_values)
    if not values:
        return None
    rank = max(1, math.ceil(q * len(values)))
    return values[min(rank, len(values)) - 1]
