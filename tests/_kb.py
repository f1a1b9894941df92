"""Fixtures and fakes of the ingestion tests: a knowledge store on the session's engine.

The tests use a database of their own on the shared engine (created once per
session) with a 16-dimensional vector index; each test starts from an empty graph.
Embeddings come from the fake OpenAI-compatible API (``tests/support``) behind the
real HTTP embedder, so limits, batching and errors take their real paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
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
from agent_trio.service import embedding_config
from agent_trio.upstream import Embedder, open_embedder
from tests._engine import own_database
from tests.support.fake_embeddings import FakeEmbeddings

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


def open_fake_embedder(
    settings: Settings, fake: FakeEmbeddings
) -> AbstractAsyncContextManager[Embedder]:
    return open_embedder(embedding_config(settings), transport=fake.transport())


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

    async def replace_documents(
        self, versions: Sequence[DocumentVersion], *, absent: bool = False
    ) -> None:
        self.written.append([v.document.id for v in versions])
        for _ in versions:
            self.replacements += 1
            if self.before_replace is not None:
                await self.before_replace(self.replacements)
        self.transactions += 1
        await super().replace_documents(versions, absent=absent)

    @property
    def sizes(self) -> list[int]:
        return [len(ids) for ids in self.written]


@dataclass
class KnowledgeBase:
    store: SpyStore
    gateway: GraphGateway
    loop: Any  #: the trio-asyncio loop the driver runs on

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
        yield KnowledgeBase(store, gateway, loop)
