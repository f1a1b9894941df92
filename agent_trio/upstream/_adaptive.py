"""Adaptive limits (AIMD) for one upstream: concurrency, and the request rate.

A service rarely knows its upstream's real limits, and the configured ones may be
too high. This controller moves two knobs within their configured bounds:

* ``limiter.total_tokens`` (concurrency), between ``min_concurrency`` and the
  configured maximum, where it starts;
* ``rate.rate`` (requests per window), between 1 and the configured rate; when the
  configured rate is unlimited it stays so until a 429 is blamed on the rate.

Every request carries a :class:`Ticket` taken when it starts: how many of our
requests were in flight then (``in_flight``, itself included; an upper bound of what
the upstream saw, as some of them may have been answered already), which ones, and
the controller's epochs. When it succeeds, the requests that were in flight when it
started and still were a while later (a tenth of its own duration: longer than an
answer takes to travel) overlapped it at the upstream: one plus their number is a
concurrency the upstream is *proven* to accept (a lower bound). Signals:

* **429** - blamed on concurrency when its ``in_flight`` is above the proven level:
  the upstream refused our ``in_flight``-th request, so its limit is at most
  ``in_flight - 1``, and the window goes down to that bound (never below the proven
  level). Otherwise that concurrency is known to work, so the 429 is blamed on the
  rate, which is set (once per epoch) to the number of our requests the upstream
  accepted in the current window - the count at which it said "no". At most once a
  window: a cut shows in what the upstream counts only after a whole window, so the
  429s of that window say nothing new (as TCP reacts once per round trip, and the
  rate's round trip is its window). Not in our first window either: until our
  requests span a whole window, their count is no measure of the upstream's (a 429
  after our first few requests may be a passing refusal). Such 429s are answered by
  their ``Retry-After`` pause alone.
* **timeout** - multiplicative decrease (``decrease_factor``), once per epoch:
  answers to requests sent before the last decrease say nothing new (as TCP reacts
  once per round trip); the proven level is forgotten down to the new window.
* **success** - raises the proven level; the window never stays below it. Growth
  is additive and slow: one more token after ``probe_after`` successes that found
  every token in use, one more request per window (2 %) after a window's worth of
  requests that had to wait for the rate. A probe that fails doubles the number of
  successes needed before the next probe at that knob (up to ``max_probe_after``);
  one that succeeds resets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from agent_trio.upstream._rate import RateLimiter

__all__ = ["AdaptiveLimits", "AdaptiveStats", "Ticket"]


@dataclass(frozen=True, slots=True)
class Ticket:
    seq: int
    in_flight: int
    overlapped: frozenset[int]  # our requests in flight when this one started
    sent_at: float
    concurrency_epoch: int
    rate_epoch: int
    saturated: bool  # every concurrency token was in use when this request started
    rate_bound: bool  # this request had to wait for the rate window


@dataclass(frozen=True, slots=True)
class AdaptiveStats:
    """Where AIMD has the limits now, within their bounds, and how often it cut them.

    ``rate_per_window`` and the upper rate bound are ``None`` when the rate is unlimited.
    """

    enabled: bool
    concurrency: int
    concurrency_bounds: tuple[int, int]
    proven_concurrency: int
    rate_per_window: int | None
    rate_bounds: tuple[int, int | None]
    concurrency_decreases: int
    rate_decreases: int


class AdaptiveLimits:
    def __init__(
        self,
        limiter: trio.CapacityLimiter,
        rate: RateLimiter,
        *,
        min_concurrency: int = 1,
        max_concurrency: int,
        decrease_factor: float = 0.5,
        probe_after: int = 32,
        max_probe_after: int = 4096,
        enabled: bool = True,
    ) -> None:
        if not 1 <= min_concurrency <= max_concurrency:
            raise ValueError("need 1 <= min_concurrency <= max_concurrency")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        self.limiter = limiter
        self.rate = rate
        self.enabled = enabled
        self.min_concurrency = min_concurrency
        self.max_concurrency = max_concurrency
        self.max_rate: int | None = rate.rate or None  # None: the rate starts unlimited
        self.decrease_factor = decrease_factor
        self.base_probe_after = probe_after
        self.max_probe_after = max_probe_after
        self._window = float(max_concurrency)
        self._proven = 0
        self._seq = 0
        self._first_sent: float | None = None
        self._last_rate_cut = -math.inf
        self._active: dict[int, float] = {}  # seq -> sent at
        self._ended: dict[int, float] = {}  # seq -> answered at, while it may matter
        self._concurrency_epoch = 0
        self._rate_epoch = 0
        self._probe_after = probe_after
        self._saturated_successes = 0
        self._probing_concurrency = False
        self._rate_probe_after = 1.0  # in windows' worth of requests
        self._rate_bound_successes = 0
        self._rate_probe_since: float | None = None
        self.decreases = 0
        self.rate_decreases = 0
        limiter.total_tokens = max_concurrency

    # -- tickets ---------------------------------------------------------------
    def ticket(self, *, rate_bound: bool) -> Ticket:
        """Call with a concurrency slot held, right before the request is sent.

        Every ticket must be given back with :meth:`finish` once its request is over.
        """
        self._seq += 1
        before = frozenset(self._active)
        now = trio.current_time()
        if self._first_sent is None:
            self._first_sent = now
        self._active[self._seq] = now
        in_flight = len(before) + 1
        return Ticket(
            seq=self._seq,
            in_flight=in_flight,
            overlapped=before,
            sent_at=now,
            concurrency_epoch=self._concurrency_epoch,
            rate_epoch=self._rate_epoch,
            saturated=in_flight >= self.limiter.total_tokens,
            rate_bound=rate_bound,
        )

    def finish(self, ticket: Ticket) -> None:
        """The request is over (answered, failed or cancelled). Idempotent."""
        if self._active.pop(ticket.seq, None) is None:
            return
        self._ended[ticket.seq] = trio.current_time()
        oldest = min(self._active.values(), default=math.inf)
        for seq in [seq for seq, ended in self._ended.items() if ended < oldest]:
            del self._ended[seq]  # no request in flight started before it ended

    # -- signals ---------------------------------------------------------------
    def on_success(self, ticket: Ticket) -> None:
        """Call before :meth:`finish`, while the other requests' state is current."""
        if not self.enabled:
            return
        now = trio.current_time()
        still = ticket.sent_at + 0.1 * (now - ticket.sent_at)
        level = 1 + sum(
            1
            for seq in ticket.overlapped
            if seq in self._active or self._ended.get(seq, -math.inf) > still
        )
        if level > self._proven:
            self._proven = min(level, self.max_concurrency)
            if self._probing_concurrency and level >= self.limiter.total_tokens:
                self._probing_concurrency = False
                self._probe_after = self.base_probe_after
        if self._window < self._proven:
            self._set_window(self._proven)
        if ticket.saturated:
            self._grow_concurrency()
        if ticket.rate_bound:
            self._grow_rate()

    def on_throttled(self, ticket: Ticket, *, accepted_in_window: int) -> None:
        """A 429. ``accepted_in_window``: our requests the upstream counted in the window."""
        if not self.enabled:
            return
        if ticket.in_flight > self._proven:
            self._refused_at(ticket)
        else:
            self._decrease_rate(ticket, accepted_in_window)

    def on_timeout(self, ticket: Ticket) -> None:
        if not self.enabled:
            return
        if self._decrease_concurrency(ticket):
            self._proven = min(self._proven, int(self._window))

    # -- internals -------------------------------------------------------------
    def _refused_at(self, ticket: Ticket) -> None:
        """The upstream refused our request number ``in_flight``: it was serving fewer of
        ours than that, so its limit is at most ``in_flight - 1`` - a bound that holds
        whatever else it was doing, so the window can go straight to it."""
        bound = max(self._proven, self.min_concurrency, ticket.in_flight - 1)
        if bound >= self._window:
            return  # sent before an earlier decrease: nothing new
        self._concurrency_epoch += 1
        self._end_probe_as_failed()
        self._set_window(bound)
        self._saturated_successes = 0
        self.decreases += 1

    def _end_probe_as_failed(self) -> None:
        if self._probing_concurrency:
            self._probing_concurrency = False
            self._probe_after = min(self._probe_after * 2, self.max_probe_after)

    def _decrease_concurrency(self, ticket: Ticket) -> bool:
        if ticket.concurrency_epoch != self._concurrency_epoch:
            return False
        self._concurrency_epoch += 1
        self._end_probe_as_failed()
        self._set_window(max(self._window * self.decrease_factor, self.min_concurrency))
        self._saturated_successes = 0
        self.decreases += 1
        return True

    def _decrease_rate(self, ticket: Ticket, accepted_in_window: int) -> None:
        if ticket.rate_epoch != self._rate_epoch or not self._spans_a_window():
            return
        now = trio.current_time()
        if now - self._last_rate_cut < self.rate.period:
            return
        self._last_rate_cut = now
        self._rate_epoch += 1
        if self._rate_probe_since is not None:
            self._rate_probe_since = None
            self._rate_probe_after = min(self._rate_probe_after * 2, 64.0)
        current = self.rate.rate or math.inf
        self.rate.rate = int(max(1, min(current - 1, accepted_in_window)))
        self._rate_bound_successes = 0
        self.rate_decreases += 1

    def _spans_a_window(self) -> bool:
        """Our requests have been counted for a whole rate window."""
        first = self._first_sent
        return first is not None and trio.current_time() - first >= self.rate.period

    def _grow_concurrency(self) -> None:
        if self._window >= self.max_concurrency:
            return
        self._saturated_successes += 1
        if self._saturated_successes >= self._probe_after:
            self._saturated_successes = 0
            self._probing_concurrency = True
            self._set_window(self._window + 1)

    def _grow_rate(self) -> None:
        current = self.rate.rate
        if self.rate.unlimited or (self.max_rate is not None and current >= self.max_rate):
            return
        now = trio.current_time()
        probe = self._rate_probe_since
        if probe is not None and now - probe >= self.rate.period:
            # a whole window at the probed rate went by without a 429 blamed on the rate
            self._rate_probe_since = None
            self._rate_probe_after = 1.0
        self._rate_bound_successes += 1
        if self._rate_bound_successes >= self._rate_probe_after * current:
            self._rate_bound_successes = 0
            self._rate_probe_since = now
            step = max(1, math.ceil(current * 0.02))
            grown = current + step
            self.rate.rate = grown if self.max_rate is None else min(self.max_rate, grown)

    def _set_window(self, value: float) -> None:
        self._window = min(float(self.max_concurrency), max(float(self.min_concurrency), value))
        self.limiter.total_tokens = max(self.min_concurrency, int(self._window))

    def statistics(self) -> AdaptiveStats:
        return AdaptiveStats(
            enabled=self.enabled,
            concurrency=int(self._window),
            concurrency_bounds=(self.min_concurrency, self.max_concurrency),
            proven_concurrency=self._proven,
            rate_per_window=self.rate.rate or None,
            rate_bounds=(1, self.max_rate),
            concurrency_decreases=self.decreases,
            rate_decreases=self.rate_decreases,
        )
