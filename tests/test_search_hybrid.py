"""Hybrid search's two sides, on virtual time, with a fake store (no engine)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from agent_trio import GraphUnavailable
from agent_trio.graph import ChunkHit
from agent_trio.search import Searcher


def hit(chunk_id: str, score: float) -> ChunkHit:
    return ChunkHit(chunk_id, "doc", chunk_id, score, score, {}, "Doc", "doc.md")


class SlowStore:
    """Answers each search after a fixed virtual delay; the full-text side may fail."""

    dimensions = 2

    def __init__(self, *, text_fails_after: float | None = None) -> None:
        self.text_fails_after = text_fails_after
        self.fulltext_calls: list[tuple[str, bool]] = []
        self.vector_done = False

    async def vector_search(self, embedding: Any, k: int) -> list[ChunkHit]:
        await trio.sleep(0.020)
        self.vector_done = True
        return [hit("a", 0.9), hit("b", 0.8)]

    async def fulltext_search(self, text: str, k: int, *, common_alone: bool = True) -> Any:
        self.fulltext_calls.append((text, common_alone))
        if self.text_fails_after is not None:
            await trio.sleep(self.text_fails_after)
            raise GraphUnavailable("the graph went away")
        await trio.sleep(0.030)
        return [hit("b", 1.0), hit("c", 0.5)]


class SlowEmbedder:
    dimensions = 2

    async def embed_query(self, text: str) -> list[float]:
        await trio.sleep(0.010)
        return [1.0, 0.0]


async def test_both_sides_run_at_once(autojump_clock: trio.abc.Clock) -> None:
    store = SlowStore()
    searcher = Searcher(store, SlowEmbedder())  # type: ignore[arg-type]
    started = trio.current_time()
    results = await searcher.hybrid("rockets and oceans", 3)
    # embedding then vector search (30 ms) beside the full-text search (30 ms)
    assert trio.current_time() - started == pytest.approx(0.030)
    assert [r.chunk_id for r in results] == ["b", "a", "c"]
    assert store.fulltext_calls == [("rockets and oceans", False)]


async def test_a_failing_side_raises_its_own_error_and_stops_the_other(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = SlowStore(text_fails_after=0.005)
    searcher = Searcher(store, SlowEmbedder())  # type: ignore[arg-type]
    started = trio.current_time()
    with pytest.raises(GraphUnavailable, match="went away"):  # the error, not a group
        await searcher.hybrid("rockets", 3)
    assert trio.current_time() - started == pytest.approx(0.005)
    assert not store.vector_done  # cancelled, not waited for
