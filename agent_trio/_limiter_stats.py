"""The state of a :class:`trio.CapacityLimiter`, as every room reports it."""

from __future__ import annotations

from dataclasses import dataclass

import trio

__all__ = ["LimiterStats"]


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """One concurrency limiter's state: tokens in use, tokens in all, tasks waiting."""

    borrowed: int
    total: float
    waiting: int

    @classmethod
    def of(cls, limiter: trio.CapacityLimiter) -> LimiterStats:
        stats = limiter.statistics()
        return cls(stats.borrowed_tokens, stats.total_tokens, stats.tasks_waiting)
