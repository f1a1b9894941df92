"""Query batching: concurrent queries share a pass of the model, on virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from upstream_support import live_tasks

from agent_trio import ResourceClosed, UpstreamProtocolError
from agent_trio.upstream import LocalEmbedder
from agent_trio.upstream._batcher import QueryBatcher

#: virtual seconds one pass of the fake model takes, whatever its size
PASS = 0.010
WINDOW = 0.001


def vector_of(text: str) -> list[float]:
    return [float(len(text)), float(sum(map(ord, text)) % 97)]


class FakeEncoder:
    """An encode function that counts its passes and can fail or hold a pass."""

    def __init__(self) -> None:
        self.passes: list[list[str]] = []
        self.fail_next = False
        self.started = trio.Event()

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.passes.append(list(texts))
        self.started.set()
        await trio.sleep(PASS)
        if self.fail_next:
            self.fail_next = False
            raise UpstreamProtocolError("the model returned garbage", upstream="embedding")
        return [vector_of(t) for t in texts]


@asynccontextmanager
async def running(
    encoder: FakeEncoder, *, max_batch: int = 8
) -> AsyncIterator[tuple[QueryBatcher, trio.Nursery]]:
    batcher = QueryBatcher(encoder, max_batch=max_batch, window=WINDOW)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        yield batcher, nursery
        batcher.close()


async def test_concurrent_queries_share_one_pass_and_each_gets_its_own_vector(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    got: dict[str, list[float]] = {}
    texts = [f"query {'x' * i}" for i in range(6)]

    async def ask(batcher: QueryBatcher, text: str) -> None:
        got[text] = await batcher.embed(text)

    async with running(encoder) as (batcher, _):
        start = trio.current_time()
        async with trio.open_nursery() as callers:
            for text in texts:
                callers.start_soon(ask, batcher, text)
        took = trio.current_time() - start
    assert [sorted(p) for p in encoder.passes] == [sorted(texts)]
    assert got == {t: vector_of(t) for t in texts}
    assert took == pytest.approx(WINDOW + PASS)


async def test_a_single_query_waits_no_longer_than_the_window(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    async with running(encoder) as (batcher, _):
        start = trio.current_time()
        assert await batcher.embed("alone") == vector_of("alone")
        assert trio.current_time() - start == pytest.approx(WINDOW + PASS)
        # idle again: the next one opens a window of its own
        start = trio.current_time()
        await batcher.embed("alone again")
        assert trio.current_time() - start == pytest.approx(WINDOW + PASS)
    assert encoder.passes == [["alone"], ["alone again"]]


async def test_a_pass_takes_at_most_max_batch_and_the_rest_go_next_without_a_window(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    texts = [f"q{i}" for i in range(19)]
    done: dict[str, float] = {}

    async def ask(batcher: QueryBatcher, text: str) -> None:
        assert await batcher.embed(text) == vector_of(text)
        done[text] = trio.current_time()

    async with running(encoder, max_batch=8) as (batcher, _):
        start = trio.current_time()
        async with trio.open_nursery() as callers:
            for text in texts:
                callers.start_soon(ask, batcher, text)
    assert [len(p) for p in encoder.passes] == [8, 8, 3]
    assert sorted(t for p in encoder.passes for t in p) == sorted(texts)
    # the full first batch ends the window at once; the others follow back to back
    assert sorted({round(t - start, 6) for t in done.values()}) == [0.01, 0.02, 0.03]


async def test_queries_arriving_during_a_pass_share_the_next(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    finished: dict[str, float] = {}

    async def ask(batcher: QueryBatcher, text: str, at: float) -> None:
        await trio.sleep(at)
        await batcher.embed(text)
        finished[text] = trio.current_time()

    async with running(encoder) as (batcher, _):
        start = trio.current_time()
        async with trio.open_nursery() as callers:
            callers.start_soon(ask, batcher, "first", 0.0)
            for i in range(3):
                callers.start_soon(ask, batcher, f"later {i}", 0.004 + i * 0.001)
    assert encoder.passes == [["first"], ["later 0", "later 1", "later 2"]]
    assert finished["first"] - start == pytest.approx(WINDOW + PASS)
    assert finished["later 2"] - start == pytest.approx(WINDOW + 2 * PASS)


async def test_a_cancelled_query_is_dropped_or_its_vector_discarded(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    async with running(encoder) as (batcher, _):
        tasks = live_tasks()
        got: list[list[float]] = []
        async with trio.open_nursery() as callers:

            async def keep(text: str) -> None:
                got.append(await batcher.embed(text))

            callers.start_soon(keep, "kept")
            # cancelled while its pass runs: the pass goes on, the vector is discarded
            with trio.move_on_after(WINDOW + PASS / 2) as in_pass:
                await batcher.embed("cancelled in the pass")
            # cancelled while queued behind a running pass: never encoded
            await encoder.started.wait()
            with trio.move_on_after(PASS / 4) as queued:
                await batcher.embed("cancelled while queued")
        assert in_pass.cancelled_caught
        assert queued.cancelled_caught
        assert got == [vector_of("kept")]
        assert await batcher.embed("after") == vector_of("after")
        await trio.testing.wait_all_tasks_blocked()
        assert live_tasks() == tasks
        assert batcher.statistics().waiting == 0
    assert encoder.passes == [["cancelled in the pass", "kept"], ["after"]]


async def test_an_encoding_error_fails_its_pass_and_the_next_pass_works(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    errors: list[Exception] = []

    async def ask(batcher: QueryBatcher, text: str) -> None:
        try:
            await batcher.embed(text)
        except UpstreamProtocolError as exc:
            errors.append(exc)

    async with running(encoder) as (batcher, _):
        encoder.fail_next = True
        async with trio.open_nursery() as callers:
            for i in range(3):
                callers.start_soon(ask, batcher, f"q{i}")
        assert len(errors) == 3
        assert await batcher.embed("fine") == vector_of("fine")


async def test_closing_fails_waiting_queries_and_refuses_new_ones(
    autojump_clock: trio.abc.Clock,
) -> None:
    encoder = FakeEncoder()
    outcomes: list[str] = []

    async def ask(batcher: QueryBatcher, text: str) -> None:
        try:
            await batcher.embed(text)
        except ResourceClosed:
            outcomes.append(f"{text}: closed")
        else:
            outcomes.append(f"{text}: ok")

    tasks = live_tasks()
    batcher = QueryBatcher(encoder, max_batch=1, window=WINDOW)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        nursery.start_soon(ask, batcher, "in the pass")
        nursery.start_soon(ask, batcher, "queued")
        await encoder.started.wait()
        batcher.close()
        batcher.close()  # idempotent
    # the pass in flight was cut by the close: nobody is left waiting
    assert sorted(outcomes) == ["in the pass: closed", "queued: closed"]
    assert live_tasks() == tasks
    with pytest.raises(ResourceClosed):
        await batcher.embed("after close")
    with pytest.raises(RuntimeError, match="runs once"):
        await batcher.run()


# -- the local embedder's wiring, with a fake model ---------------------------------


class FakeModel:
    """What LocalEmbedder uses of a sentence-transformers model (no tokenizer)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def get_embedding_dimension(self) -> int:
        return 2

    def encode(self, texts: list[str], **_: Any) -> Any:
        self.calls.append(len(texts))
        rows = np.asarray([vector_of(t) for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def test_the_local_embedder_batches_queries_while_its_batcher_runs() -> None:
    model = FakeModel()
    embedder = LocalEmbedder(model, name="fake", dimensions=2, inference_batch=16)
    queries = [f"question {'?' * i}" for i in range(12)]
    alone = await embedder.embed_query("before")  # no batcher: a pass of its own
    got: dict[str, list[float]] = {}

    async def ask(text: str) -> None:
        got[text] = await embedder.embed_query(text)

    async with trio.open_nursery() as nursery:
        await nursery.start(embedder.serve_queries)
        async with trio.open_nursery() as callers:
            for text in queries:
                callers.start_soon(ask, text)
        embedder.close()
    assert model.calls[0] == 1
    assert len(alone) == 2
    assert sum(model.calls[1:]) == len(queries)
    assert len(model.calls[1:]) < len(queries)  # shared passes
    for text, vector in got.items():
        norm = sum(x * x for x in vector_of(text)) ** 0.5
        assert vector == pytest.approx([x / norm for x in vector_of(text)])
    assert len(got) == len(queries)
    assert embedder.statistics().limiter.borrowed == 0
    with pytest.raises(ResourceClosed):
        await embedder.embed_query("after close")
