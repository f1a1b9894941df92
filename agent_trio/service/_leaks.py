"""Leak detection: limiter tokens held that no operation in flight accounts for.

The service knows what is in flight: chats and streams (the app registers each
for as long as it holds its chat slot), ingestions, graph calls (the gateway
counts those begun and not returned) and upstream attempts (each client counts
its own). Each limiter's tokens are held only by one of these:

==============================  ============================================
limiter                         held only by
==============================  ============================================
``chat``                        a chat or a stream, one token each
``graph``, ``graph_health``,    a graph call
``graph_store``
``write``                       a graph call (a replacement's transaction, or
                                the batches of a delete), one at a time
``embedding``, ``llm``          an attempt of that upstream client
``extraction``                  a job of an extraction worker process
==============================  ============================================

So a limiter with more tokens borrowed than there are such operations has lost
some: a task that left without giving its token back, or one borrowed on
behalf of an object that is gone. A check can catch a moment in between (a
token taken, its call not begun yet), so a mismatch counts only once it has
lasted :attr:`LeakWatch.grace` consecutive checks: then it is *suspected*, said
once in a warning, shown by ``/health`` (``degraded``) and by the metrics, until
a check finds the limiter in step again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import trio

__all__ = ["OPERATION_KINDS", "InFlight", "LeakWatch", "Suspect"]

log = logging.getLogger("agent_trio.service")

#: the operations the service registers itself
OPERATION_KINDS = ("chat", "stream", "ingestion")


class InFlight:
    """Operations in flight, by kind (:data:`OPERATION_KINDS`)."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(OPERATION_KINDS, 0)

    def begin(self, kind: str) -> None:
        self._counts[kind] += 1

    def end(self, kind: str) -> None:
        if self._counts[kind] <= 0:
            raise RuntimeError(f"no {kind} is in flight to end")
        self._counts[kind] -= 1

    @contextmanager
    def track(self, kind: str) -> Iterator[None]:
        """One operation of ``kind`` in flight while the block runs."""
        self.begin(kind)
        try:
            yield
        finally:
            self.end(kind)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)


@dataclass(frozen=True, slots=True)
class Suspect:
    """A limiter that lends more tokens than its operations in flight can hold."""

    limiter: str
    borrowed: int
    accounted: int

    def describe(self) -> str:
        return (
            f"{self.limiter}: {self.borrowed} borrowed, "
            f"{self.accounted} accounted for by operations in flight"
        )


class LeakWatch:
    """Compares, at each :meth:`check`, the tokens borrowed with what accounts for them.

    ``borrowed()`` gives each limiter's tokens borrowed; ``accounted()`` the most
    that operations in flight can hold, for the limiters it knows (others are not
    checked). :meth:`run` checks every ``interval`` seconds.
    """

    def __init__(
        self,
        borrowed: Callable[[], Mapping[str, int]],
        accounted: Callable[[], Mapping[str, int]],
        *,
        grace: int,
    ) -> None:
        if grace < 1:
            raise ValueError("grace must be at least one check")
        self._borrowed = borrowed
        self._accounted = accounted
        self.grace = grace
        self.checks = 0
        self._streaks: dict[str, int] = {}
        self._suspects: dict[str, Suspect] = {}

    @property
    def suspects(self) -> list[Suspect]:
        """The limiters suspected of a leak now, by name."""
        return [self._suspects[name] for name in sorted(self._suspects)]

    def checked(self) -> list[str]:
        """The limiters a check compares."""
        return sorted(self._accounted())

    def check(self) -> None:
        """Compare once; suspect a limiter after ``grace`` mismatches in a row."""
        self.checks += 1
        borrowed = self._borrowed()
        for name, accounted in self._accounted().items():
            held = borrowed.get(name, 0)
            if held <= accounted:
                self._streaks[name] = 0
                if self._suspects.pop(name, None) is not None:
                    log.info("limiter %s is back in step: %d tokens borrowed", name, held)
                continue
            self._streaks[name] = streak = self._streaks.get(name, 0) + 1
            if streak >= self.grace:
                suspect = Suspect(name, held, accounted)
                if name not in self._suspects:
                    log.warning(
                        "limiter leak suspected, %s for %d checks in a row",
                        suspect.describe(),
                        streak,
                    )
                self._suspects[name] = suspect

    async def run(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Check every ``interval`` seconds until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(interval)
            self.check()
