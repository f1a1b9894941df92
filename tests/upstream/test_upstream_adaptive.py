"""AIMD on concurrency and rate: unit rules, and convergence against hidden limits."""

from __future__ import annotations

import trio
from upstream_support import (
    embedding_settings,
    fake_embeddings,
    quick_tuning,
    vector_for,
)

from agent_trio.service import embedding_config
from agent_trio.upstream import AdaptiveLimits, RateLimiter, open_embedder


def _limits(max_concurrency: int = 8, rate: int = 0) -> AdaptiveLimits:
    return AdaptiveLimits(
        trio.CapacityLimiter(max_concurrency),
        RateLimiter(rate),
        max_concurrency=max_concurrency,
        probe_after=4,
    )


def _succeed_at(limits: AdaptiveLimits, level: int) -> None:
    """``level`` requests overlap; the last one sent succeeds while the others still run."""
    tickets = [limits.ticket(rate_bound=False) for _ in range(level)]
    limits.on_success(tickets[-1])
    for ticket in tickets:
        limits.finish(ticket)


def _throttled_at(limits: AdaptiveLimits, level: int, accepted: int = 0) -> None:
    tickets = [limits.ticket(rate_bound=True) for _ in range(level)]
    limits.on_throttled(tickets[-1], accepted_in_window=accepted)
    for ticket in tickets:
        limits.finish(ticket)


async def test_429_shrinks_to_the_refused_level_never_below_proven(
    autojump_clock: trio.abc.Clock,
) -> None:
    limits = _limits(8)
    limiter = limits.limiter
    burst = [limits.ticket(rate_bound=False) for _ in range(8)]
    limits.on_throttled(burst[6], accepted_in_window=0)  # refused our 7th: limit <= 6
    assert limiter.total_tokens == 6
    limits.on_throttled(burst[7], accepted_in_window=0)  # the 8th says less: ignored
    assert limiter.total_tokens == 6
    limits.on_throttled(burst[4], accepted_in_window=0)  # refused the 5th: limit <= 4
    assert limiter.total_tokens == 4
    for ticket in burst:
        limits.finish(ticket)
    _succeed_at(limits, 3)  # 3 overlapping requests were accepted
    assert limits.statistics().proven_concurrency == 3
    _throttled_at(limits, 4)
    assert limiter.total_tokens == 3
    assert limits.statistics().concurrency_decreases == 3


async def test_timeouts_halve_once_per_epoch(autojump_clock: trio.abc.Clock) -> None:
    limits = _limits(8)
    tickets = [limits.ticket(rate_bound=False) for _ in range(8)]
    limits.on_timeout(tickets[0])
    limits.on_timeout(tickets[1])  # same round trip: one cut only
    assert limits.limiter.total_tokens == 4
    limits.on_timeout(limits.ticket(rate_bound=False))
    assert limits.limiter.total_tokens == 2


async def test_a_success_only_proves_the_overlap_it_saw(autojump_clock: trio.abc.Clock) -> None:
    limits = _limits(8)
    first = limits.ticket(rate_bound=False)
    second = limits.ticket(rate_bound=False)  # in flight: 2 (upper bound)
    limits.finish(first)  # ... but the first was answered before the second was
    limits.on_success(second)
    limits.finish(second)
    assert limits.statistics().proven_concurrency == 1
    # answered at the same moment as the next request was sent: it did not overlap it
    third = limits.ticket(rate_bound=False)
    fourth = limits.ticket(rate_bound=False)
    await trio.sleep(0.01)
    limits.finish(third)
    await trio.sleep(0.99)
    limits.on_success(fourth)
    limits.finish(fourth)
    assert limits.statistics().proven_concurrency == 1
    # still in flight well after the next one was sent: proven overlap
    fifth = limits.ticket(rate_bound=False)
    sixth = limits.ticket(rate_bound=False)
    await trio.sleep(0.5)
    limits.finish(fifth)
    await trio.sleep(0.5)
    limits.on_success(sixth)
    limits.finish(sixth)
    assert limits.statistics().proven_concurrency == 2


async def test_probes_grow_slowly_and_back_off_when_they_fail(
    autojump_clock: trio.abc.Clock,
) -> None:
    limits = _limits(8)
    limiter = limits.limiter
    _throttled_at(limits, 5)
    _succeed_at(limits, 4)
    assert limiter.total_tokens == 4
    for _ in range(2):
        _succeed_at(limits, 4)  # saturated successes
    assert limiter.total_tokens == 4
    _succeed_at(limits, 4)  # the 4th (probe_after=4) probes one more token
    assert limiter.total_tokens == 5
    _throttled_at(limits, 5)  # the probe fails
    assert limiter.total_tokens == 4
    for _ in range(7):  # the next probe needs twice as many
        _succeed_at(limits, 4)
    assert limiter.total_tokens == 4
    _succeed_at(limits, 4)
    assert limiter.total_tokens == 5
    _succeed_at(limits, 5)  # this probe succeeds: 5 is proven
    assert limits.statistics().proven_concurrency == 5


async def test_429_at_a_proven_concurrency_is_blamed_on_the_rate(
    autojump_clock: trio.abc.Clock,
) -> None:
    limits = _limits(4, rate=100)
    _succeed_at(limits, 2)
    await trio.sleep(limits.rate.period)  # our requests span a whole window
    _throttled_at(limits, 2, accepted=37)
    assert limits.rate.rate == 37
    assert limits.limiter.total_tokens == 4
    _throttled_at(limits, 1, accepted=20)  # within the window of the cut: nothing new
    assert limits.rate.rate == 37
    await trio.sleep(limits.rate.period)
    _throttled_at(limits, 1, accepted=40)  # never raised by a decrease
    assert limits.rate.rate == 36
    assert limits.statistics().rate_decreases == 2


async def test_a_429_in_our_first_window_only_pauses(autojump_clock: trio.abc.Clock) -> None:
    """Three requests, then a 429: three a minute is no measure of the upstream's
    limit until our requests span a minute; the rate stays, and is cut after that."""
    limits = _limits(4)  # unlimited rate
    _succeed_at(limits, 2)
    await trio.sleep(limits.rate.period / 2)
    _throttled_at(limits, 1, accepted=3)
    assert limits.rate.unlimited
    assert limits.statistics().rate_decreases == 0
    await trio.sleep(limits.rate.period / 2)
    _throttled_at(limits, 1, accepted=3)
    assert limits.rate.rate == 3
    assert limits.statistics().rate_decreases == 1


async def test_converges_to_a_hidden_concurrency_limit(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=1.0, concurrency_limit=3)
    settings = embedding_settings(embedding_max_concurrency=12, embedding_batch_size=1)
    texts = [f"t{i}" for i in range(600)]
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        vectors = await emb.embed(texts)
        stats = emb.statistics()
    assert vectors == [vector_for(t) for t in texts]
    assert stats.limiter.total == 3
    assert stats.upstream.adaptive.proven_concurrency == 3
    second_half = fake.statuses[len(fake.statuses) // 2 :]
    assert second_half.count(429) / len(second_half) <= 0.02
    # close to the hidden limit's throughput: 600 requests, 3 at a time, 1 s each
    assert trio.current_time() <= 200 * 1.1


async def test_converges_to_a_hidden_rate_limit(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=0.5, rate_limit=30, rate_period=60.0)
    settings = embedding_settings(
        embedding_max_concurrency=4, embedding_rate_limit_per_minute=120, embedding_batch_size=1
    )
    texts = [f"t{i}" for i in range(450)]
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        vectors = await emb.embed(texts)
        stats = emb.statistics()
    assert vectors == [vector_for(t) for t in texts]
    assert 29 <= stats.upstream.rate.limit <= 31
    second_half = fake.statuses[len(fake.statuses) // 2 :]
    assert second_half.count(429) / len(second_half) <= 0.02
    # 450 requests at 30 per minute take 15 minutes at best
    assert trio.current_time() <= 15 * 60 * 1.05
