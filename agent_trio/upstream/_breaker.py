"""A circuit breaker on the Trio clock.

::

    closed ──(threshold consecutive failures)──▶ open
      ▲                                           │ cool-down passed
      │ probe succeeded                           ▼
      └────────────────────────────────────── half_open ──(probe failed)──▶ open

While open, calls fail at once with :class:`~agent_trio.CircuitOpen` (no request is
sent). After the cool-down, exactly one request (the probe) is let through; the
others keep failing fast until it has answered. A probe that is cancelled or ends
without a verdict gives its turn back, so another caller can probe.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

import trio

from agent_trio._errors import CircuitOpen

__all__ = ["BreakerState", "BreakerStats", "CircuitBreaker", "Permit"]

log = logging.getLogger("agent_trio.upstream")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit:
    """Permission for one attempt; tells the breaker how it went."""

    def __init__(self, breaker: CircuitBreaker, *, probe: bool) -> None:
        self._breaker = breaker
        self.probe = probe
        self._done = False

    def success(self) -> None:
        if not self._done:
            self._done = True
            self._breaker._on_success(self)

    def failure(self) -> None:
        if not self._done:
            self._done = True
            self._breaker._on_failure(self)

    def release(self) -> None:
        """No verdict (cancelled, or a 429 / 4xx that says nothing of the upstream's health)."""
        if not self._done:
            self._done = True
            self._breaker._on_release(self)


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A breaker's state, as a :class:`BreakerState` value, and its history.

    ``retry_in_seconds``: how long until an open breaker lets a probe through.
    """

    state: str
    consecutive_failures: int
    times_opened: int
    retry_in_seconds: float


class CircuitBreaker:
    def __init__(self, name: str, *, threshold: int, cooldown: float) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = -math.inf
        self._probing = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._cooldown_left() <= 0:
            return BreakerState.HALF_OPEN
        return self._state

    def check(self) -> None:
        """Raise :class:`CircuitOpen` if a request would be refused now (takes no permit)."""
        state = self.state
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._probing):
            raise self._open_error()

    def permit(self) -> Permit:
        """Take permission for one attempt, or raise :class:`CircuitOpen`."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(self, probe=False)
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._state = BreakerState.HALF_OPEN
            self._probing = True
            log.info("%s circuit breaker half-open: one probe request goes through", self.name)
            return Permit(self, probe=True)
        raise self._open_error()

    def statistics(self) -> BreakerStats:
        return BreakerStats(
            state=self.state.value,
            consecutive_failures=self._failures,
            times_opened=self.times_opened,
            retry_in_seconds=round(max(0.0, self._cooldown_left()), 3)
            if self._state is BreakerState.OPEN
            else 0.0,
        )

    # -- verdicts --------------------------------------------------------------
    def _on_success(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False
        if self._state is not BreakerState.CLOSED:
            log.info("%s circuit breaker closed: the upstream answered", self.name)
        self._state = BreakerState.CLOSED
        self._failures = 0

    def _on_failure(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False
            self._open()
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self.threshold:
            self._open()

    def _on_release(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False

    def _open(self) -> None:
        probe_failed = self._state is BreakerState.HALF_OPEN
        self._state = BreakerState.OPEN
        self._opened_at = trio.current_time()
        self.times_opened += 1
        log.warning(
            "%s circuit breaker opened %s; failing fast for %.3g s",
            self.name,
            "again: the probe failed"
            if probe_failed
            else f"after {self._failures} consecutive failures",
            self.cooldown,
        )

    def _cooldown_left(self) -> float:
        return self._opened_at + self.cooldown - trio.current_time()

    def _open_error(self) -> CircuitOpen:
        left = max(0.0, self._cooldown_left())
        return CircuitOpen(
            f"{self.name} upstream is failing: circuit breaker open after "
            f"{self._failures} consecutive failures; retry in {left:.1f} s",
            upstream=self.name,
            status_code=None,
            retry_after=left if left > 0 else None,
        )
