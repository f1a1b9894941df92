"""Fixtures of the knowledge-store tests: a gateway on the session's engine.

The tests use a database of their own on the shared engine (created once per
session), so their schema — a 16-dimensional vector index — never meets another
test's. Each test starts from an empty graph: data is wiped, the schema is kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from agent_trio.engine import EngineInfo
from agent_trio.graph import ArcadeDialect, GraphGateway, GraphTarget, KnowledgeStore, open_graph
from tests._engine import own_database

from .kb_support import DIMENSIONS

KB_DATABASE = "knowledge_tests"


@pytest.fixture(scope="session")
def kb_database(engine_info: EngineInfo) -> Iterator[str]:
    """A database of the knowledge-store tests on the session's engine."""
    with own_database(engine_info, KB_DATABASE) as info:
        yield info.database


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def dialect(engine_info: EngineInfo, kb_database: str, http: httpx.AsyncClient) -> ArcadeDialect:
    return ArcadeDialect(
        http,
        http_url=engine_info.http_url,
        database=kb_database,
        user=engine_info.user,
        password=engine_info.password,
    )


@pytest.fixture
async def loop() -> AsyncIterator[Any]:
    """The trio-asyncio loop the driver runs on."""
    async with trio_asyncio.open_loop() as loop:
        yield loop


@pytest.fixture
async def gateway(
    engine_info: EngineInfo, kb_database: str, dialect: ArcadeDialect, loop: Any
) -> AsyncIterator[GraphGateway]:
    """An open gateway on an empty graph with the schema in place."""
    target = GraphTarget(engine_info.bolt_uri, engine_info.user, engine_info.password, kb_database)
    async with open_graph(
        target, loop=loop, limiter=trio.CapacityLimiter(4), query_timeout=30
    ) as gateway:
        await dialect.ensure_schema(gateway, DIMENSIONS)
        await gateway.query("MATCH (n) DETACH DELETE n")
        yield gateway


@pytest.fixture
def store(gateway: GraphGateway, dialect: ArcadeDialect) -> KnowledgeStore:
    return KnowledgeStore(gateway, dialect, dimensions=DIMENSIONS)
