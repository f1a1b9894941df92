"""The rolling-window rate limiter, on virtual time."""

from __future__ import annotations

import trio
import trio.testing

from agent_trio.upstream import RateLimiter


async def _start(limiter: RateLimiter, starts: list[float]) -> None:
    async with limiter.reserve() as reservation:
        reservation.commit()
        starts.append(trio.current_time())


async def test_starts_are_exact_in_a_rolling_window(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(3, period=60.0)
    starts: list[float] = []
    for _ in range(7):
        await _start(limiter, starts)
    assert starts == [0.0, 0.0, 0.0, 60.0, 60.0, 60.0, 120.0]


async def test_window_rolls_rather_than_resetting(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(2, period=60.0)
    starts: list[float] = []
    await _start(limiter, starts)
    await trio.sleep(30)
    await _start(limiter, starts)
    await _start(limiter, starts)  # waits for the first start to leave: t=60
    await _start(limiter, starts)  # and the second: t=90
    assert starts == [0.0, 30.0, 60.0, 90.0]


async def test_margin_delays_the_exit_from_the_window(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(1, period=10.0, margin=0.5)
    starts: list[float] = []
    for _ in range(3):
        await _start(limiter, starts)
    assert starts == [0.0, 10.5, 21.0]


async def test_concurrent_waiters_never_exceed_the_rate_and_are_served_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = RateLimiter(5, period=60.0)
    order: list[int] = []
    starts: list[float] = []

    async def client(number: int) -> None:
        async with limiter.reserve() as reservation:
            order.append(number)
            reservation.commit()
            starts.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for number in range(23):
            nursery.start_soon(client, number)
            await trio.testing.wait_all_tasks_blocked()
    assert order == list(range(23))
    for start in starts:  # any 60 s window holds at most 5 starts
        assert sum(1 for other in starts if start <= other < start + 60) <= 5
    assert max(starts) == 240.0


async def test_a_reservation_occupies_its_place_until_it_commits(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = RateLimiter(1, period=60.0)
    starts: list[float] = []
    async with trio.open_nursery() as nursery, limiter.reserve() as reservation:
        nursery.start_soon(_start, limiter, starts)
        await trio.sleep(25)  # e.g. waiting for a concurrency slot
        reservation.commit()
    # the window counts from the real start (t=25), not from the reservation (t=0)
    assert starts == [85.0]


async def test_leaving_without_commit_frees_the_place(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(1, period=60.0)
    starts: list[float] = []
    async with trio.open_nursery() as nursery, limiter.reserve():
        nursery.start_soon(_start, limiter, starts)
        await trio.sleep(5)
    assert starts == [5.0]


async def test_cancelled_waiter_leaves_no_trace(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(1, period=60.0)
    starts: list[float] = []
    await _start(limiter, starts)
    with trio.move_on_after(10) as scope:
        await _start(limiter, starts)
    assert scope.cancelled_caught
    stats = limiter.statistics()
    assert stats.pending == 0
    assert stats.waiting == 0
    await _start(limiter, starts)
    assert starts == [0.0, 60.0]


async def test_pause_holds_every_caller_and_can_be_extended(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = RateLimiter(0)  # unlimited: only the pause applies
    starts: list[float] = []
    limiter.pause_until(trio.current_time() + 5)
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(_start, limiter, starts)
        await trio.sleep(2)
        limiter.pause_until(trio.current_time() + 7)  # now t=2: until t=9
        limiter.pause_until(trio.current_time() + 1)  # shorter: ignored
    assert starts == [9.0, 9.0, 9.0]


async def test_refund_gives_the_place_back(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(1, period=60.0)
    starts: list[float] = []
    async with limiter.reserve() as reservation:
        reservation.commit()
    await trio.sleep(3)
    reservation.refund()  # the upstream did not count it (429)
    await _start(limiter, starts)
    assert starts == [3.0]
    assert limiter.in_window() == 1


async def test_changing_the_rate_wakes_the_waiter(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(1, period=60.0)
    starts: list[float] = []
    await _start(limiter, starts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_start, limiter, starts)
        await trio.sleep(10)
        limiter.rate = 2
    assert starts == [0.0, 10.0]
