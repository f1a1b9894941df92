"""Circuit breaker states on the Trio clock."""

from __future__ import annotations

import logging

import pytest
import trio

from agent_trio import CircuitOpen
from agent_trio.upstream import BreakerState, CircuitBreaker


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.permit().failure()


async def test_opens_after_threshold_consecutive_failures(autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker("embedding", threshold=3, cooldown=30.0)
    _fail(breaker, 2)
    breaker.permit().success()  # a success resets the count
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.permit()
    assert info.value.upstream == "embedding"
    assert info.value.retry_after == pytest.approx(30.0)
    assert breaker.statistics().state == "open"


async def test_half_open_lets_exactly_one_probe_through(autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker("llm", threshold=1, cooldown=10.0)
    _fail(breaker, 1)
    await trio.sleep(9.5)
    with pytest.raises(CircuitOpen) as info:
        breaker.check()
    assert info.value.retry_after == pytest.approx(0.5)
    await trio.sleep(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    probe = breaker.permit()
    assert probe.probe
    with pytest.raises(CircuitOpen):
        breaker.permit()  # the others fail fast while the probe is out
    probe.success()
    assert breaker.state is BreakerState.CLOSED
    breaker.permit().success()


async def test_failed_probe_reopens_for_a_new_cooldown(autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker("llm", threshold=2, cooldown=10.0)
    _fail(breaker, 2)
    await trio.sleep(10)
    breaker.permit().failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.statistics().retry_in_seconds == pytest.approx(10.0)
    assert breaker.times_opened == 2
    await trio.sleep(10)
    assert breaker.state is BreakerState.HALF_OPEN


async def test_probe_without_verdict_gives_its_turn_back(autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker("llm", threshold=1, cooldown=10.0)
    _fail(breaker, 1)
    await trio.sleep(10)
    breaker.permit().release()  # e.g. the probe's caller was cancelled
    assert breaker.state is BreakerState.HALF_OPEN
    second = breaker.permit()
    assert second.probe


async def test_each_transition_is_one_log_line(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent_trio.upstream")
    breaker = CircuitBreaker("llm", threshold=2, cooldown=10.0)
    _fail(breaker, 2)
    for _ in range(3):
        with pytest.raises(CircuitOpen):
            breaker.check()  # refusals are counted, not logged
    await trio.sleep(10)
    breaker.permit().failure()
    await trio.sleep(10)
    breaker.permit().success()
    breaker.permit().success()  # closed already: nothing to say
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "llm circuit breaker opened after 2 consecutive failures; failing fast for 10 s",
        ),
        (logging.INFO, "llm circuit breaker half-open: one probe request goes through"),
        (
            logging.WARNING,
            "llm circuit breaker opened again: the probe failed; failing fast for 10 s",
        ),
        (logging.INFO, "llm circuit breaker half-open: one probe request goes through"),
        (logging.INFO, "llm circuit breaker closed: the upstream answered"),
    ]
