"""Fixtures and fakes of the ingestion tests: a knowledge store on the session's engine.

The tests use a database of their own on the shared engine (created once per
session) with a 16-dimensional vector index; each test starts from an empty graph.
Embeddings come from a fake OpenAI-compatible API (``FakeEmbeddings``) behind the
real HTTP embedder, so limits, batching and errors take their real paths.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from agent_trio import Settings, load_settings
from agent_trio.engine import EngineInfo
from agent_trio.graph import (
    ArcadeDialect,
    DocumentVersion,
    GraphGateway,
    GraphTarget,
    KnowledgeStore,
    open_graph,
)
from agent_trio.upstream import Embedder, open_embedder
from tests._engine import own_database
from tests.fakes import hashed_vector

DIMENSIONS = 16
INGEST_DATABASE = "ingest_tests"


def embedding_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_data_dir": tmp_path / "data",
        "embedding_provider": "openai",
        "embedding_base_url": "http://embeddings.test/v1",
        "embedding_model": "fake",
        "embedding_dimensions": DIMENSIONS,
        "embedding_rate_limit_per_minute": 0,
        "llm_provider": "none",
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class FakeEmbeddings:
    """An OpenAI-compatible ``/embeddings`` API: hashed vectors, optionally slow.

    Counts requests and texts and the most requests it saw at once. ``reject``:
    texts containing it get a 400 for the whole request; ``status``: answer every
    request with it; ``on_request``: called with the request number before answering.
    """

    delay: float = 0.0
    reject: str | None = None
    status: int | None = None
    on_request: Callable[[int], None] | None = None
    requests: int = 0
    texts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    batches: list[list[str]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.on_request is not None:
            self.on_request(self.requests)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(self.delay)
            return self._answer(json.loads(request.content))
        finally:
            self.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> httpx.Response:
        if self.status is not None:
            return httpx.Response(self.status, json={"error": {"message": "unavailable"}})
        texts: list[str] = body["input"]
        if self.reject is not None and any(self.reject in t for t in texts):
            return httpx.Response(400, json={"error": {"message": "input rejected"}})
        self.texts += len(texts)
        self.batches.append(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(t, DIMENSIONS)}
            for i, t in enumerate(texts)
        ]
        return httpx.Response(200, json={"object": "list", "data": data, "model": "fake"})


def open_fake_embedder(
    settings: Settings, fake: FakeEmbeddings
) -> AbstractAsyncContextManager[Embedder]:
    return open_embedder(settings, transport=fake.transport())


class SpyStore(KnowledgeStore):
    """A knowledge store that counts documents replaced and can run code before each.

    A transaction of several documents counts each of them, and runs
    ``before_replace`` for each (with the running count) before it is sent.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replacements = 0
        self.transactions = 0
        self.written: list[list[str]] = []  # the document ids of each transaction begun
        self.before_replace: Callable[[int], Awaitable[None]] | None = None

    async def replace_documents(self, versions: Sequence[DocumentVersion]) -> None:
        self.written.append([v.document.id for v in versions])
        for _ in versions:
            self.replacements += 1
            if self.before_replace is not None:
                await self.before_replace(self.replacements)
        self.transactions += 1
        await super().replace_documents(versions)

    @property
    def sizes(self) -> list[int]:
        return [len(ids) for ids in self.written]


@dataclass
class KnowledgeBase:
    store: SpyStore
    gateway: GraphGateway

    async def count(self, label: str) -> int:
        rows = await self.gateway.query(f"MATCH (n:{label}) RETURN count(n) AS n")
        return int(rows[0]["n"])


@pytest.fixture(scope="session")
def ingest_database(engine_info: EngineInfo) -> Iterator[str]:
    """A database of the ingestion tests on the session's engine."""
    with own_database(engine_info, INGEST_DATABASE) as info:
        yield info.database


@pytest.fixture
async def kb(engine_info: EngineInfo, ingest_database: str) -> AsyncIterator[KnowledgeBase]:
    """A knowledge store on an empty graph with the schema in place."""
    target = GraphTarget(
        engine_info.bolt_uri, engine_info.user, engine_info.password, ingest_database
    )
    async with (
        httpx.AsyncClient(timeout=30) as http,
        trio_asyncio.open_loop() as loop,
        open_graph(target, loop=loop, limiter=trio.CapacityLimiter(4), query_timeout=30) as gateway,
    ):
        dialect = ArcadeDialect(
            http,
            http_url=engine_info.http_url,
            database=ingest_database,
            user=engine_info.user,
            password=engine_info.password,
        )
        store = SpyStore(gateway, dialect, dimensions=DIMENSIONS)
        await store.ensure_schema()
        await gateway.query("MATCH (n) DETACH DELETE n")
        yield KnowledgeBase(store, gateway)
