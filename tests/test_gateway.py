"""The graph gateway on the real engine: errors mapped, cancellation leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio_asyncio

from agent_trio import GraphQueryError, ResourceClosed
from agent_trio.engine import EngineInfo
from agent_trio.graph import GraphGateway, GraphTarget, Statement, open_graph

pytestmark = pytest.mark.engine

#: a statement that keeps the engine busy for seconds (well over the cancel delays below);
#: the engine may finish it after we cancel, so it is kept short
SLOW = (
    "UNWIND range(1, 1500) AS a UNWIND range(1, 1500) AS b "
    "WITH a, b WHERE (a + b) % 7 = 0 RETURN count(*) AS c"
)
LIMIT = 4


@pytest.fixture
async def gateway(engine_info: EngineInfo) -> AsyncIterator[GraphGateway]:
    target = GraphTarget(
        engine_info.bolt_uri, engine_info.user, engine_info.password, engine_info.database
    )
    async with trio_asyncio.open_loop() as loop:
        limiter = trio.CapacityLimiter(LIMIT)
        async with open_graph(target, loop=loop, limiter=limiter, query_timeout=30) as gateway:
            await gateway.query("MATCH (n:GatewayProbe) DETACH DELETE n")
            yield gateway


async def test_parameters_travel_as_parameters(gateway: GraphGateway) -> None:
    hostile = "x' }) DETACH DELETE n //"
    rows = await gateway.query(
        "RETURN $text AS text, $nested AS nested", {"text": hostile, "nested": {"a": [1, None]}}
    )
    assert rows == [{"text": hostile, "nested": {"a": [1, None]}}]


async def test_errors_are_mapped(gateway: GraphGateway) -> None:
    with pytest.raises(GraphQueryError):
        await gateway.query("RETRUN 1")
    await gateway.ping()  # the pool is fine after a refused statement


async def test_a_failed_transaction_leaves_nothing(gateway: GraphGateway) -> None:
    with pytest.raises(GraphQueryError):
        await gateway.transaction(
            [
                Statement("CREATE (:GatewayProbe {id: $id})", {"id": "first"}),
                Statement("THIS IS NOT CYPHER"),
            ]
        )
    rows = await gateway.query("MATCH (n:GatewayProbe) RETURN count(n) AS c")
    assert rows == [{"c": 0}]
    await gateway.transaction([Statement("CREATE (:GatewayProbe {id: 'kept'})")])
    assert await gateway.query("MATCH (n:GatewayProbe) RETURN n.id AS id") == [{"id": "kept"}]


async def test_cancelling_a_query_returns_its_slot_and_keeps_the_pool(
    gateway: GraphGateway,
) -> None:
    for delay in (0.0, 0.01, 0.05, 0.2):
        with trio.move_on_after(delay) as scope:
            await gateway.query(SLOW)
        assert scope.cancelled_caught
        assert gateway.limiter.borrowed_tokens == 0
        assert await gateway.query("RETURN 2 AS two") == [{"two": 2}]


async def test_many_cancelled_queries_then_the_limit_still_holds(gateway: GraphGateway) -> None:
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    peak = 0

    async def one() -> None:
        nonlocal peak
        peak = max(peak, gateway.limiter.borrowed_tokens + 1)
        await gateway.query(SLOW)

    with trio.move_on_after(0.3):
        async with trio.open_nursery() as nursery:
            for _ in range(3 * LIMIT):
                nursery.start_soon(one)
            await trio.sleep(0.1)
            assert gateway.limiter.borrowed_tokens == LIMIT
            assert gateway.limiter.statistics().tasks_waiting == 2 * LIMIT
    assert gateway.limiter.borrowed_tokens == 0
    assert trio.lowlevel.current_statistics().tasks_living <= tasks_before  # none left over
    results = []
    async with trio.open_nursery() as nursery:
        for i in range(2 * LIMIT):

            async def ask(i: int = i) -> None:
                results.append((await gateway.query("RETURN $i AS i", {"i": i}))[0]["i"])

            nursery.start_soon(ask)
    assert sorted(results) == list(range(2 * LIMIT))


async def test_a_closed_gateway_refuses_calls(engine_info: EngineInfo) -> None:
    target = GraphTarget(
        engine_info.bolt_uri, engine_info.user, engine_info.password, engine_info.database
    )
    async with trio_asyncio.open_loop() as loop:
        limiter = trio.CapacityLimiter(1)
        async with open_graph(target, loop=loop, limiter=limiter, query_timeout=30) as gateway:
            await gateway.ping()
        assert gateway.closed
        with pytest.raises(ResourceClosed):
            await gateway.query("RETURN 1 AS ok")
        assert limiter.borrowed_tokens == 0
