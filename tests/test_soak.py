"""The fault soak, short: a few hundred chats against upstreams that stall, reset,
throttle, fail and send garbage, from clients that leave at random points; then
nothing may be left over, and every message must be stored as the client saw it.

The long version is ``bench/soak.py``; both use ``tests/support/soak.py`` and
``tests/support/faults.py``. Nothing here depends on the machine's speed: faults are
chosen by a seeded RNG on each upstream request's number, clients leave after a
number of frames, and every wait is a bounded poll for a condition.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from agent_trio import Settings
from agent_trio.engine import EngineInfo
from agent_trio.service import embedding_config
from agent_trio.upstream import Embedder, open_embedder
from tests.support.chat import llm_chat, serve_app
from tests.support.fake_embeddings import FakeEmbeddings
from tests.support.fake_llm import agentic_script
from tests.support.faults import Faults
from tests.support.soak import (
    Probe,
    check_outcomes,
    check_sessions,
    plan,
    poll_until,
    run_chats,
)

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CHATS = 300
CLIENTS = 8
SEED = 7
#: the server's per-attempt deadline for either upstream; an injected stall is longer
ATTEMPT_TIMEOUT = 2.0
#: httpx keeps an idle pooled connection this long (its default)
POOL_EXPIRY = 5.0
#: bounds of the polls: against a hang, not measures of speed
SETTLE = 60.0


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_nothing_is_left_over_after_chats_through_faults(
    engine_info: EngineInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # thousands of warnings about injected faults, kept by the log capture, would
    # count in this process's memory
    caplog.set_level(logging.ERROR)
    # no 429s here (bench/soak.py has them): the service takes a 429 as the upstream's
    # rate limit and slows the whole upstream to what it accepted in the last minute,
    # which early in a short run is a few requests a minute: minutes of waiting
    faults = Faults(seed=SEED, throttle=0.0, stall_seconds=2 * ATTEMPT_TIMEOUT)
    embeddings = FakeEmbeddings(
        dimensions=16, fault=faults.embedding_fault, stall=faults.stall_seconds
    )

    @asynccontextmanager
    async def embedder(settings: Settings) -> AsyncIterator[Embedder]:
        async with open_embedder(
            embedding_config(settings), transport=embeddings.transport()
        ) as opened:
            yield opened

    settings = {
        "chat_max_concurrency": 256,
        "llm_max_concurrency": 64,
        "embedding_max_concurrency": 16,
        "llm_request_timeout_seconds": ATTEMPT_TIMEOUT,
        "embedding_request_timeout_seconds": ATTEMPT_TIMEOUT,
        "upstream_breaker_cooldown_seconds": 1.0,
    }
    script = faults.llm_script(agentic_script(answer="The answer, as the sources tell it."))
    async with (
        llm_chat(engine_info, tmp_path, script, embedder=embedder, **settings) as (app, llm),
        serve_app(app.app) as url,
    ):
        llm.keep_bodies = False  # this process's memory is measured
        faults.active = True
        probe = Probe(url)
        run = f"soak-{tmp_path.name}"

        def chats(first: int, count: int, label: str, leave: float = 0.1) -> list:  # type: ignore[type-arg]
            return [
                plan(n, seed=SEED, run=f"{run}-{label}", leave_share=leave)
                for n in range(first, first + count)
            ]

        async def server_tasks() -> int:
            # the fake LLM runs in this process too: one task per connection of its own
            return await probe.tasks() - llm.connections

        async def quiet() -> None:
            """Let pooled upstream connections expire, then run one chat: the pools hold
            what one chat needs, before the load as after it."""
            await trio.sleep(POOL_EXPIRY + 0.5)
            await run_chats(url, iter(chats(0, 1, f"quiet-{trio.current_time()}", 0)), clients=1)

        await run_chats(url, iter(chats(0, 2 * CLIENTS, "warm")), clients=CLIENTS)
        await poll_until(probe.borrowed, lambda n: n == 0, within=SETTLE)
        await quiet()
        tasks_before, fds_before = await server_tasks(), open_fds()

        block = CHATS // 3
        rss_at: list[int] = []

        def on_done(done: int) -> None:
            if done % block == 0:
                embeddings.batches.clear()  # what the fake kept (this process's memory)
                rss_at.append(rss())

        tally = await run_chats(
            url, iter(chats(0, CHATS, "load")), clients=CLIENTS, on_done=on_done
        )

        borrowed, _ = await poll_until(probe.borrowed, lambda n: n == 0, within=SETTLE)
        assert borrowed == 0, await probe.limiters()
        await quiet()
        tasks_after, _ = await poll_until(server_tasks, lambda n: n == tasks_before, within=SETTLE)
        fds_after, _ = await poll_until(
            lambda: _value(open_fds()), lambda n: abs(n - fds_before) <= 2, within=SETTLE
        )
        broken = check_outcomes(tally) + await check_sessions(url, tally)

    assert tasks_after == tasks_before
    assert abs(fds_after - fds_before) <= 2, (fds_before, fds_after)
    assert (rss_at[-1] - rss_at[0]) / rss_at[0] < 0.05, rss_at
    assert broken == []
    # the faults did happen, to both upstreams, and clients did leave
    injected = {what.split()[0] for what in faults.injected}
    assert injected == {"llm", "embedding"}, faults.injected
    assert sum(1 for o in tally.outcomes if o.left) > 0
    assert len(tally.outcomes) == CHATS


async def _value(value: int) -> int:
    return value
