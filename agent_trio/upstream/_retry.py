"""The retry policy: which failed attempts are tried again, after how long, and how often.

The loop is stamina's, sleeping on the Trio clock and never holding a slot; what it
retries is decided per call by a :class:`RetryBudget`:

* a 429 is retried on a budget of its own (``max_throttled``): at once when it said
  ``Retry-After`` (the whole upstream is paused until then), else after a back-off;
  a ``Retry-After`` longer than ``max_retry_after`` fails the call;
* a 5xx, timeout or network failure is retried after an exponential back-off with
  jitter, up to ``max_attempts`` attempts;
* anything else is not retried.

A wait that cannot end before the caller's deadline (``trio.current_effective_deadline``)
is not started: the call fails now.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import stamina
import trio

from agent_trio.upstream._failures import RETRYABLE, AttemptError, FailureKind

__all__ = ["RetryBudget", "RetryPolicy", "final_errors", "retrying", "use_own_retry_logs"]

log = logging.getLogger("agent_trio.upstream")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one upstream's calls are retried (see the module doc)."""

    max_attempts: int
    max_throttled: int
    max_retry_after: float
    backoff_initial: float
    backoff_max: float
    backoff_jitter: float


def retrying(policy: RetryPolicy, counters: dict[str, int]) -> AsyncIterator[stamina.Attempt]:
    """The attempts of one call, each to be entered with ``with attempt:``."""
    budget = RetryBudget(policy, counters)
    return stamina.retry_context(
        on=budget.should_retry,
        attempts=policy.max_attempts + policy.max_throttled,
        timeout=None,  # deadlines are the caller's cancel scopes (Trio clock)
        wait_initial=policy.backoff_initial,
        wait_max=policy.backoff_max,
        wait_jitter=policy.backoff_jitter,
    ).__aiter__()


@contextmanager
def final_errors(counters: dict[str, int]) -> Iterator[None]:
    """Turn the last failed attempt into the documented error, cause preserved."""
    try:
        yield
    except AttemptError as exc:
        error = exc.error
        if exc.kind in RETRYABLE:
            counters["gave_up"] += 1
        log.warning("%s; %s", error, "gave up" if exc.kind in RETRYABLE else "not retried")
        raise error from exc.__cause__


def use_own_retry_logs() -> None:
    """Make stamina's retry hooks (process-wide) ours: none.

    :class:`~agent_trio.upstream.Upstream` logs each retry itself, naming the upstream
    and the failure. stamina's default hooks log a bare ``stamina.retry_scheduled``
    line (its details ride in ``extra``, which plain formatters drop) and count on the
    default Prometheus registry, which ``/metrics`` does not serve. Entry points call
    this once; a library does not change process-wide settings on its own.
    """
    stamina.instrumentation.set_on_retry_hooks(())


class RetryBudget:
    """Decides, per call, whether a failed attempt is retried (stamina's ``on`` hook)."""

    def __init__(self, policy: RetryPolicy, counters: dict[str, int]) -> None:
        self._policy = policy
        self._counters = counters
        self._failures = 0
        self._throttled = 0

    def should_retry(self, exc: Exception) -> bool | float:
        if not isinstance(exc, AttemptError) or exc.kind not in RETRYABLE:
            return False
        policy = self._policy
        now = trio.current_time()
        deadline = trio.current_effective_deadline()
        if exc.kind is FailureKind.THROTTLED:
            self._throttled += 1
            retry_after = exc.error.retry_after
            if self._throttled >= policy.max_throttled:
                return False
            if retry_after is not None:
                if retry_after > policy.max_retry_after or now + retry_after > deadline:
                    return False
                self._counters["retries"] += 1
                log.info("%s; retrying when the pause of %.3g s ends", exc.error, retry_after)
                return 0.0  # the whole upstream is paused; the next attempt waits for it
        else:
            self._failures += 1
            if self._failures >= policy.max_attempts:
                return False
        least_wait = min(
            policy.backoff_max,
            policy.backoff_initial * 2 ** (self._failures + self._throttled - 1),
        )
        if now + least_wait > deadline:
            return False
        self._counters["retries"] += 1
        retry = self._failures + self._throttled
        level = logging.INFO if exc.kind is FailureKind.THROTTLED else logging.WARNING
        log.log(
            level, "%s; retry %d after a back-off of at least %.3g s", exc.error, retry, least_wait
        )
        return True  # stamina: exponential back-off with jitter, slept with trio.sleep
