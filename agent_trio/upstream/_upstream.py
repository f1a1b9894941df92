"""The call every upstream client makes: one implementation for LLM and embeddings.

An :class:`Upstream` wraps one ``httpx.AsyncClient`` and owns, for that API:

* a :class:`trio.CapacityLimiter` (requests in flight), adjusted by AIMD;
* a fair rolling-window :class:`RateLimiter` (requests started per minute), which
  a 429 with ``Retry-After`` pauses for every caller;
* a :class:`CircuitBreaker`;
* the retry loop (stamina, sleeping with ``trio.sleep``), whose policy is
  :mod:`._retry`'s; each failed attempt is classified by :mod:`._failures`.

One attempt goes: breaker check → wait for the rate (no slot held) → take a slot →
commit the rate reservation → send, under a per-attempt deadline → classify. Back-off
sleeps happen between attempts, outside every limiter. What is retried:

==========================  =====================================================
answer                      what happens
==========================  =====================================================
2xx, parsed                 success
429                         pause the upstream for ``Retry-After``, shrink (AIMD),
                            retry; a budget of its own (``max_throttled``)
5xx, timeout, network       back off exponentially with jitter, retry up to
                            ``max_attempts``; counts as a breaker failure
other 4xx                   :class:`UpstreamRejected` at once, with the upstream's message
malformed 2xx               :class:`UpstreamProtocolError` at once; a breaker failure
breaker open                :class:`CircuitOpen` at once, no request sent
==========================  =====================================================

A wait that cannot end before the caller's deadline (``trio.current_effective_deadline``)
is not started: the error is raised now, with ``retry_after`` set.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import trio

from agent_trio._errors import (
    CircuitOpen,
    ResourceClosed,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from agent_trio._limiter_stats import LimiterStats
from agent_trio._waits import WaitStats, WaitTally
from agent_trio.upstream._adaptive import AdaptiveLimits, AdaptiveStats, Ticket
from agent_trio.upstream._breaker import BreakerStats, CircuitBreaker, Permit
from agent_trio.upstream._failures import (
    BREAKER_FAILURES,
    AttemptError,
    FailureKind,
    as_attempt_error,
    raise_for_status,
    reraise_mapped,
)
from agent_trio.upstream._rate import RateLimiter, RateStats, Reservation
from agent_trio.upstream._retry import RetryPolicy, final_errors, retrying

__all__ = ["Upstream", "UpstreamStats", "UpstreamTuning"]

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class UpstreamTuning:
    """Knobs below the settings; the defaults suit real APIs.

    ``rate_period``: the rate limit counts requests per this many seconds (60: per
    minute). ``rate_margin``: seconds added before a start leaves the window, for the
    time a request takes to reach the upstream. ``max_throttled``: 429s one call
    tolerates (default 3 × max attempts). ``max_retry_after``: a longer Retry-After
    fails the call at once (the pause is capped to it). ``wall_clock`` reads
    HTTP-date Retry-After values.
    """

    min_concurrency: int = 1
    adaptive: bool = True
    rate_period: float = 60.0
    rate_margin: float = 0.05
    max_throttled: int | None = None
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    backoff_jitter: float = 0.2
    max_retry_after: float = 300.0
    wall_clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class UpstreamStats:
    """One upstream's limits, rate, breaker and AIMD as they are now, and its counters.

    ``counters`` holds ``attempts``, ``succeeded``, ``retries``, ``gave_up``,
    ``circuit_open`` and one count per kind of failure (``_failures.FailureKind``).
    """

    closed: bool
    limiter: LimiterStats
    rate: RateStats
    breaker: BreakerStats
    adaptive: AdaptiveStats
    counters: Mapping[str, int]
    #: attempts begun (waiting for the rate or a slot, or sent) and not yet over
    attempts_in_flight: int = 0
    #: the waits for a slot (``limiter``) and for the rate (``rate``)
    waits: Mapping[str, WaitStats] = field(default_factory=dict)


class Upstream:
    """Limits, rate, breaker and retries for one upstream HTTP API (``name``).

    ``rate_limit``: requests started per ``tuning.rate_period`` (per minute by
    default); 0 = unlimited.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        max_concurrency: int,
        rate_limit: int,
        max_attempts: int,
        breaker_threshold: int,
        breaker_cooldown: float,
        attempt_timeout: float,
        tuning: UpstreamTuning = UpstreamTuning(),
    ) -> None:
        self.name = name
        self._client = client
        self.tuning = tuning
        self.limiter = trio.CapacityLimiter(max_concurrency)
        self.rate = RateLimiter(rate_limit, period=tuning.rate_period, margin=tuning.rate_margin)
        self.adaptive = AdaptiveLimits(
            self.limiter,
            self.rate,
            min_concurrency=min(tuning.min_concurrency, max_concurrency),
            max_concurrency=max_concurrency,
            enabled=tuning.adaptive,
        )
        self.breaker = CircuitBreaker(name, threshold=breaker_threshold, cooldown=breaker_cooldown)
        self.retry = RetryPolicy(
            max_attempts=max_attempts,
            max_throttled=(
                tuning.max_throttled if tuning.max_throttled is not None else 3 * max_attempts
            ),
            max_retry_after=tuning.max_retry_after,
            backoff_initial=tuning.backoff_initial,
            backoff_max=tuning.backoff_max,
            backoff_jitter=tuning.backoff_jitter,
        )
        self.attempt_timeout = attempt_timeout
        self._wall_clock = tuning.wall_clock
        self._closed = False
        #: attempts begun (waiting for the rate or a slot, or sent) and not yet over
        self.attempts_in_flight = 0
        #: waits for the rate (``self.rate``) and for a slot (``self.limiter``)
        self.waits = WaitTally()
        self.counters: dict[str, int] = dict.fromkeys(
            ["attempts", "succeeded", "retries", "gave_up", "circuit_open"]
            + [kind.value for kind in FailureKind],
            0,
        )

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts

    @property
    def max_throttled(self) -> int:
        return self.retry.max_throttled

    @property
    def max_retry_after(self) -> float:
        return self.retry.max_retry_after

    # -- lifecycle -------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Refuse every later call. Idempotent; the owner closes the httpx client."""
        self._closed = True

    def check_open(self) -> None:
        if self._closed:
            raise ResourceClosed(f"the {self.name} client is closed")

    # -- calls -----------------------------------------------------------------
    async def post_json(self, url: str, payload: Any, parse: Callable[[Any], T]) -> T:
        """POST ``payload`` as JSON; ``parse`` turns the decoded 2xx body into the result.

        ``parse`` raises :class:`UpstreamProtocolError` for an answer of the wrong shape.
        """
        self.check_open()
        request = self._client.build_request("POST", url, json=payload)
        with final_errors(self.counters):
            async for attempt in retrying(self.retry, self.counters):
                with attempt:
                    return await self._attempt(request, parse)
        raise AssertionError("unreachable: the retry loop returns or raises")

    def stream_json(
        self,
        url: str,
        payload: Any,
        first: Callable[[httpx.Response], Awaitable[S]],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[S]:
        """POST and keep the answer open as a stream; retried only until ``first`` returns.

        ``first(response)`` reads up to the first token and returns what the caller
        iterates; the concurrency slot is held until the block is left.
        """
        request = self._client.build_request("POST", url, json=payload, headers=headers)
        return self._stream(request, first)

    # -- statistics ------------------------------------------------------------
    def statistics(self) -> UpstreamStats:
        return UpstreamStats(
            closed=self._closed,
            limiter=LimiterStats.of(self.limiter),
            rate=self.rate.statistics(),
            breaker=self.breaker.statistics(),
            adaptive=self.adaptive.statistics(),
            counters=dict(self.counters),
            attempts_in_flight=self.attempts_in_flight,
            waits={"limiter": self.waits.of(self.limiter), "rate": self.waits.of(self.rate)},
        )

    async def _attempt(self, request: httpx.Request, parse: Callable[[Any], T]) -> T:
        async with self._admitted() as (reservation, ticket, permit):
            try:
                with trio.fail_after(self.attempt_timeout):
                    response = await self._client.send(request)
                raise_for_status(response, self.name, wall_clock=self._wall_clock)
                result = parse(_decode_json(response, self.name))
            except BaseException as exc:
                self._record_failure(exc, reservation, ticket, permit)
                reraise_mapped(exc, self.name, self.attempt_timeout)
            self._record_success(ticket, permit)
            return result

    @asynccontextmanager
    async def _stream(
        self,
        request: httpx.Request,
        first: Callable[[httpx.Response], Awaitable[S]],
    ) -> AsyncIterator[S]:
        self.check_open()
        async with AsyncExitStack() as stack:
            with final_errors(self.counters):
                async for attempt in retrying(self.retry, self.counters):
                    with attempt:  # the loop ends after the first attempt that succeeds
                        state = await stack.enter_async_context(self._stream_once(request, first))
            yield state

    @asynccontextmanager
    async def _stream_once(
        self,
        request: httpx.Request,
        first: Callable[[httpx.Response], Awaitable[S]],
    ) -> AsyncIterator[S]:
        async with self._admitted() as (reservation, ticket, permit):
            response: httpx.Response | None = None
            try:
                with trio.fail_after(self.attempt_timeout):
                    response = await self._client.send(request, stream=True)
                    if response.status_code >= 300:
                        await response.aread()
                    raise_for_status(response, self.name, wall_clock=self._wall_clock)
                    state = await first(response)
            except BaseException as exc:
                if response is not None:
                    await _close_shielded(response)
                self._record_failure(exc, reservation, ticket, permit)
                reraise_mapped(exc, self.name, self.attempt_timeout)
            self._record_success(ticket, permit)
            try:
                yield state
            finally:
                await _close_shielded(response)

    # -- admission -------------------------------------------------------------
    @asynccontextmanager
    async def _admitted(self) -> AsyncIterator[tuple[Reservation, Ticket, Permit]]:
        self.check_open()
        self._fail_fast()
        self.attempts_in_flight += 1
        try:
            async with self._admitted_now() as admitted:
                yield admitted
        finally:
            self.attempts_in_flight -= 1

    @asynccontextmanager
    async def _admitted_now(self) -> AsyncIterator[tuple[Reservation, Ticket, Permit]]:
        waiting_since = trio.current_time()
        async with self.rate.reserve() as reservation:
            self.waits.add(self.rate, trio.current_time() - waiting_since)
            rate_waited = self.rate.saturated()
            while True:
                waiting_since = trio.current_time()
                async with self.limiter:
                    self.waits.add(self.limiter, trio.current_time() - waiting_since)
                    if not self.rate.paused():
                        self.check_open()
                        permit = self._permit()
                        reservation.commit()
                        ticket = self.adaptive.ticket(
                            rate_bound=rate_waited or self.rate.saturated()
                        )
                        self.counters["attempts"] += 1
                        try:
                            yield reservation, ticket, permit
                        finally:
                            permit.release()  # no-op once a verdict was given
                            self.adaptive.finish(ticket)
                        return
                await self.rate.wait_unpaused()

    def _fail_fast(self) -> None:
        """Before queueing: an open breaker, or a pause longer than the caller can wait."""
        try:
            self.breaker.check()
        except CircuitOpen:
            self.counters["circuit_open"] += 1
            raise
        pause = self.rate.paused_until - trio.current_time()
        if pause > 0 and trio.current_time() + pause > trio.current_effective_deadline():
            raise UpstreamUnavailable(
                f"{self.name} upstream asked us to wait {pause:.1f} s (429), "
                "longer than this call may take",
                upstream=self.name,
                status_code=429,
                retry_after=pause,
            )

    def _permit(self) -> Permit:
        try:
            return self.breaker.permit()
        except CircuitOpen:
            self.counters["circuit_open"] += 1
            raise

    # -- outcomes --------------------------------------------------------------
    def _record_success(self, ticket: Ticket, permit: Permit) -> None:
        self.counters["succeeded"] += 1
        permit.success()
        self.adaptive.on_success(ticket)

    def _record_failure(
        self, exc: BaseException, reservation: Reservation, ticket: Ticket, permit: Permit
    ) -> None:
        failure = as_attempt_error(exc, self.name, self.attempt_timeout)
        if not isinstance(failure, AttemptError):
            return  # cancelled, or not about the upstream: no verdict (permit released)
        self.counters[failure.kind.value] += 1
        if failure.kind in BREAKER_FAILURES:
            permit.failure()
        elif failure.kind is FailureKind.REJECTED:
            permit.success()  # the upstream is up; our request was wrong
        if failure.kind is FailureKind.THROTTLED:
            reservation.refund()
            retry_after = failure.error.retry_after
            if retry_after is not None:
                pause = min(retry_after, self.max_retry_after)
                self.rate.pause_until(trio.current_time() + pause)
            self.adaptive.on_throttled(ticket, accepted_in_window=self.rate.in_window())
        elif failure.kind is FailureKind.TIMEOUT:
            self.adaptive.on_timeout(ticket)


def _decode_json(response: httpx.Response, name: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise UpstreamProtocolError(
            f"{name} upstream answered HTTP {response.status_code} with a body that is "
            f"not JSON: {response.text[:200]!r}",
            upstream=name,
            status_code=response.status_code,
        ) from exc


async def _close_shielded(response: httpx.Response | None) -> None:
    if response is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        await response.aclose()
