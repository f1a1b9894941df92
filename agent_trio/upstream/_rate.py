"""A fair rolling-window rate limiter on the Trio clock.

At most ``rate`` requests *start* in any window of ``period`` seconds. A caller first
takes a :class:`Reservation` (this is the only place it waits for the rate), and
commits it at the moment its request really starts, usually after it got a
concurrency slot. Until it commits, the reservation occupies a place in the window
as if it had started "now or later"; so the recorded start time is the true one and
the window the upstream sees can never hold more than ``rate`` requests, even when
a request waited a long time for its concurrency slot.

Waiters are served in arrival order (a :class:`trio.Lock` is fair). The whole limiter
can be paused until a given time (a 429 with ``Retry-After``), and its rate can be
lowered or raised at run time by the adaptive controller; both wake the waiter at the
head of the queue so that it recomputes its wait.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from types import TracebackType

import trio

__all__ = ["RateLimiter", "RateStats", "Reservation"]


class _Start:
    """One committed start in the window; ``counted`` is False once refunded."""

    __slots__ = ("at", "counted")

    def __init__(self, at: float) -> None:
        self.at = at
        self.counted = True


class Reservation:
    """A place in the window, held from ``__aenter__`` until commit or exit.

    ``async with limiter.reserve() as reservation:`` waits (fairly) for the place;
    leaving the block without :meth:`commit` gives the place back.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._state = "new"  # new -> held -> committed | released
        self._start: _Start | None = None

    def commit(self) -> None:
        """Record that the request starts now. Call once, right before sending."""
        if self._state != "held":
            raise RuntimeError(f"cannot commit a reservation that is {self._state}")
        self._state = "committed"
        self._start = self._limiter._commit()

    def refund(self) -> None:
        """The upstream did not count this request (it answered 429): free its place."""
        if self._start is not None and self._start.counted:
            self._start.counted = False
            self._limiter._refund()

    async def __aenter__(self) -> Reservation:
        if self._state != "new":
            raise RuntimeError("a reservation is entered once")
        await self._limiter._acquire()
        self._state = "held"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "held":
            self._state = "released"
            self._limiter._release_pending()


@dataclass(frozen=True, slots=True)
class RateStats:
    """A rate limiter's state: its window, what is in it, who waits, and any pause.

    ``limit`` is the starts allowed per ``period_seconds``, ``None`` when unlimited.
    """

    limit: int | None
    period_seconds: float
    in_window: int
    pending: int
    waiting: int
    paused_for_seconds: float


class RateLimiter:
    """Requests per rolling ``period`` (seconds); ``rate=0`` means unlimited.

    ``margin`` seconds are added to the period when a start leaves the window, to
    absorb the difference between our start time and the upstream's arrival time.
    """

    def __init__(self, rate: int, *, period: float = 60.0, margin: float = 0.0) -> None:
        if rate < 0 or period <= 0 or margin < 0:
            raise ValueError("rate must be >= 0, period > 0 and margin >= 0")
        self._rate = rate
        self.period = period
        self.margin = margin
        self._starts: deque[_Start] = deque()
        self._counted = 0  # counted starts in self._starts
        self._pending = 0
        self._paused_until = -math.inf
        self._lock = trio.Lock()
        self._changed = trio.Event()
        self._waiting = 0

    # -- configuration ---------------------------------------------------------
    @property
    def rate(self) -> int:
        return self._rate

    @rate.setter
    def rate(self, value: int) -> None:
        if value < 0:
            raise ValueError("rate must be >= 0")
        self._rate = value
        self._wake()

    @property
    def unlimited(self) -> bool:
        return self._rate == 0

    def pause_until(self, deadline: float) -> None:
        """Start nothing before ``deadline`` (Trio clock). Pauses only ever extend."""
        if deadline > self._paused_until:
            self._paused_until = deadline
            self._wake()

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def paused(self) -> bool:
        return trio.current_time() < self._paused_until

    # -- waiting ---------------------------------------------------------------
    def reserve(self) -> Reservation:
        """``async with limiter.reserve() as r:`` waits (fairly) until a request may start."""
        return Reservation(self)

    async def _acquire(self) -> None:
        self._waiting += 1
        try:
            async with self._lock:
                while (at := self._next_start_time()) > trio.current_time():
                    changed = self._changed
                    with trio.move_on_at(at):
                        await changed.wait()
                self._pending += 1
        finally:
            self._waiting -= 1

    async def wait_unpaused(self) -> None:
        """Sleep until no pause is in force (without taking a place in the window)."""
        while (until := self._paused_until) > trio.current_time():
            changed = self._changed
            with trio.move_on_at(until):
                await changed.wait()

    # -- accounting ------------------------------------------------------------
    def in_window(self) -> int:
        """Counted starts in the current window (not pending reservations)."""
        self._expire(trio.current_time())
        return self._counted

    def statistics(self) -> RateStats:
        now = trio.current_time()
        self._expire(now)
        return RateStats(
            limit=self._rate or None,
            period_seconds=self.period,
            in_window=self._counted,
            pending=self._pending,
            waiting=self._waiting,
            paused_for_seconds=round(max(0.0, self._paused_until - now), 3),
        )

    def saturated(self) -> bool:
        """True when a new request could not start right now because of the window."""
        if self.unlimited:
            return False
        self._expire(trio.current_time())
        return self._counted + self._pending >= self._rate

    # -- internals -------------------------------------------------------------
    def _next_start_time(self) -> float:
        now = trio.current_time()
        gate = max(now, self._paused_until)
        if self.unlimited:
            return gate
        self._expire(now)
        used = self._counted + self._pending
        if used < self._rate:
            return gate
        if self._pending >= self._rate:
            return math.inf  # wait for a pending reservation to commit or go
        # the (used - rate + 1) oldest counted starts must leave the window first
        need = used - self._rate
        for start in self._starts:
            if start.counted:
                if need == 0:
                    return max(gate, start.at + self.period + self.margin)
                need -= 1
        return gate  # unreachable: counted >= need + 1

    def _expire(self, now: float) -> None:
        horizon = now - self.period - self.margin
        starts = self._starts
        while starts and (starts[0].at <= horizon or not starts[0].counted):
            if starts.popleft().counted:
                self._counted -= 1

    def _commit(self) -> _Start:
        self._pending -= 1
        now = trio.current_time()
        self._expire(now)
        start = _Start(now)
        self._starts.append(start)
        self._counted += 1
        self._wake()  # a waiter blocked on pending reservations can now compute its time
        return start

    def _refund(self) -> None:
        self._counted -= 1
        self._wake()

    def _release_pending(self) -> None:
        self._pending -= 1
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
