"""The graph gateway on the real engine: errors mapped; a cancelled call returns
only when it is done on the engine, and leaves nothing behind."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import neo4j
import pytest
import trio
import trio.testing
import trio_asyncio

from agent_trio import GraphQueryError, GraphTransient, ResourceClosed
from agent_trio.engine import EngineInfo
from agent_trio.graph import GraphGateway, GraphTarget, Statement, open_graph
from tests.support.checks import (
    assert_limiters_free,
    cut_at,
    living_tasks,
    pending_driver_tasks,
)

pytestmark = pytest.mark.engine

#: a statement that keeps the engine busy for a while, then writes a probe node
SLOW_WRITE = (
    "UNWIND range(1, $n) AS a UNWIND range(1, $n) AS b "
    "WITH count(*) AS c CREATE (p:GatewayProbe {id: $id, c: c}) RETURN c"
)
LIMIT = 4
#: cancelled calls wait this long for the engine in these tests: far longer than any
#: statement here takes, so only the engine's answer ends the wait
GRACE = 120.0


def target_of(engine: EngineInfo) -> GraphTarget:
    return GraphTarget(engine.bolt_uri, engine.user, engine.password, engine.database)


@pytest.fixture
async def loop() -> AsyncIterator[Any]:
    async with trio_asyncio.open_loop() as loop:
        yield loop


@pytest.fixture
async def gateway(engine_info: EngineInfo, loop: Any) -> AsyncIterator[GraphGateway]:
    limiter = trio.CapacityLimiter(LIMIT)
    async with open_graph(
        target_of(engine_info), loop=loop, limiter=limiter, query_timeout=30, cancel_grace=GRACE
    ) as gateway:
        await gateway.query("MATCH (n:GatewayProbe) DETACH DELETE n")
        yield gateway


async def probes(gateway: GraphGateway) -> list[str]:
    rows = await gateway.query("MATCH (n:GatewayProbe) RETURN n.id AS id ORDER BY id")
    return [row["id"] for row in rows]


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
    assert await probes(gateway) == []
    await gateway.transaction([Statement("CREATE (:GatewayProbe {id: 'kept'})")])
    assert await probes(gateway) == ["kept"]


async def test_a_transaction_that_loses_a_race_is_run_again_whole(gateway: GraphGateway) -> None:
    """The engine's answer to a lost race is a TransientError; the first try fails so
    after its first statement ran, and the second try runs both, once."""
    tries: list[int] = []

    def lose_the_first_race(index: int, count: int) -> None:
        if index == 0:
            tries.append(gateway.limiter.borrowed_tokens)
        if index == 1 and len(tries) == 1:
            raise neo4j.exceptions.TransientError("concurrent change to the same record")

    gateway.on_statement = lose_the_first_race
    try:
        await gateway.transaction(
            [
                Statement("CREATE (:GatewayProbe {id: 'one'})"),
                Statement("CREATE (:GatewayProbe {id: 'two'})"),
            ]
        )
    finally:
        gateway.on_statement = None
    assert tries == [1, 1]  # each try took one slot: the first gave its slot back
    assert await probes(gateway) == ["one", "two"]  # the first try was rolled back


async def test_a_transaction_that_keeps_losing_fails_as_transient(gateway: GraphGateway) -> None:
    def always_lose(index: int, count: int) -> None:
        if index == 1:
            raise neo4j.exceptions.TransientError("deadlock detected")

    gateway.on_statement = always_lose
    try:
        with pytest.raises(GraphTransient):
            await gateway.transaction(
                [Statement("CREATE (:GatewayProbe {id: 'never'})"), Statement("RETURN 1")]
            )
    finally:
        gateway.on_statement = None
    assert await probes(gateway) == []
    assert_limiters_free(gateway.limiter)


async def test_a_query_cancelled_once_sent_returns_when_the_engine_is_done(
    gateway: GraphGateway, loop: Any
) -> None:
    for n, name in ((300, "a"), (600, "b")):
        with trio.CancelScope() as scope:
            gateway.on_statement = cut_at(1, scope.cancel)
            await gateway.query(SLOW_WRITE, {"n": n, "id": name})
        assert scope.cancelled_caught
        # returned means done: the statement has committed, its session is closed
        assert pending_driver_tasks(loop) == []
        assert_limiters_free(gateway.limiter)
        gateway.on_statement = None
        assert (await probes(gateway))[-1] == name


async def test_a_query_cancelled_before_it_is_sent_never_runs(
    gateway: GraphGateway, loop: Any
) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await gateway.query(SLOW_WRITE, {"n": 10, "id": "never"})
    assert scope.cancelled_caught
    assert pending_driver_tasks(loop) == []
    assert_limiters_free(gateway.limiter)
    assert await probes(gateway) == []


WRITES = [Statement("CREATE (:GatewayProbe {id: $id})", {"id": f"w{i}"}) for i in range(3)]


@pytest.mark.parametrize("in_flight", [False, True], ids=["before-send", "in-flight"])
async def test_a_transaction_cut_at_every_boundary_is_all_or_nothing_at_once(
    gateway: GraphGateway, loop: Any, in_flight: bool
) -> None:
    """Cut before each statement and before the commit; either at the boundary itself
    (the call stops there) or once the statement is on its way (it runs to its end).
    Right after the cancelled call returns, the graph holds all of it or nothing, for
    good: the next write never meets the cut one on the engine."""
    token = trio.lowlevel.current_trio_token()
    everything = [s.params["id"] for s in WRITES]
    for boundary in range(1, len(WRITES) + 2):  # the last boundary is the commit
        with trio.CancelScope() as scope:

            def cancel(scope: trio.CancelScope = scope) -> None:
                if in_flight:  # lands once the driver's side yields: the statement is sent
                    token.run_sync_soon(scope.cancel)
                else:
                    scope.cancel()

            gateway.on_statement = cut_at(boundary, cancel)
            await gateway.transaction(WRITES)
        gateway.on_statement = None
        assert scope.cancelled_caught, boundary
        assert pending_driver_tasks(loop) == []
        assert_limiters_free(gateway.limiter)
        seen = await probes(gateway)
        if not in_flight:
            assert seen == [], boundary
        elif boundary == len(WRITES) + 1:
            assert seen == everything  # the commit was sent: it landed, before we returned
        else:
            assert seen in ([], everything), boundary
        # the same nodes again, by another writer: no conflict with the cut one
        await gateway.query("MATCH (n:GatewayProbe) DETACH DELETE n")
        await gateway.transaction(WRITES)
        assert await probes(gateway) == everything
        await gateway.query("MATCH (n:GatewayProbe) DETACH DELETE n")


async def test_many_cancelled_queries_then_the_limit_still_holds(
    gateway: GraphGateway, loop: Any
) -> None:
    tasks_before = await living_tasks()
    peak = 0
    sent: list[int] = []  # one entry per statement that reached the engine
    done: list[str] = []  # queries that finished before the cut

    def count(index: int, total: int) -> None:
        nonlocal peak
        peak = max(peak, gateway.limiter.borrowed_tokens)
        sent.append(index)

    async def run(query_id: str) -> None:
        await gateway.query(SLOW_WRITE, {"n": 300, "id": query_id})
        done.append(query_id)

    gateway.on_statement = count
    async with trio.open_nursery() as nursery:
        for i in range(3 * LIMIT):
            nursery.start_soon(run, f"q{i:02}")
        await trio.testing.wait_all_tasks_blocked()
        # the cut: every slot is held and the rest wait. On a slow machine a statement
        # may already have finished and handed its slot on: those are counted, not hoped away
        assert gateway.limiter.borrowed_tokens == LIMIT
        assert gateway.limiter.statistics().tasks_waiting == 2 * LIMIT - len(done)
        nursery.cancel_scope.cancel()
    gateway.on_statement = None
    assert peak == LIMIT
    assert_limiters_free(gateway.limiter)
    assert pending_driver_tasks(loop) == []
    assert await living_tasks() == tasks_before  # none left over
    # every statement that was sent finished on the engine; the waiting ones never ran
    assert len(await probes(gateway)) == len(sent)
    results: list[int] = []
    async with trio.open_nursery() as nursery:
        for i in range(2 * LIMIT):

            async def ask(i: int = i) -> None:
                results.append((await gateway.query("RETURN $i AS i", {"i": i}))[0]["i"])

            nursery.start_soon(ask)
    assert sorted(results) == list(range(2 * LIMIT))


async def test_an_engine_that_does_not_finish_in_the_grace_loses_the_connection(
    engine_info: EngineInfo, loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The wait of a cancelled call is bounded: after ``cancel_grace`` the call's
    connection is dropped, the slot comes back, and the pool still works."""
    limiter = trio.CapacityLimiter(1)
    async with open_graph(
        target_of(engine_info), loop=loop, limiter=limiter, query_timeout=30, cancel_grace=0.05
    ) as gateway:
        caplog.set_level(logging.WARNING, logger="agent_trio.graph")
        with trio.CancelScope() as scope:
            gateway.on_statement = cut_at(1, scope.cancel)
            # millions of rows: seconds of work, never done within the grace
            await gateway.query(SLOW_WRITE, {"n": 3000, "id": "dropped"})
        gateway.on_statement = None
        assert scope.cancelled_caught
        assert pending_driver_tasks(loop) == []
        assert_limiters_free(limiter)
        assert "dropping its connection" in caplog.text
        await gateway.ping()


async def test_a_closed_gateway_refuses_calls(engine_info: EngineInfo, loop: Any) -> None:
    limiter = trio.CapacityLimiter(1)
    async with open_graph(
        target_of(engine_info), loop=loop, limiter=limiter, query_timeout=30
    ) as gateway:
        await gateway.ping()
    assert gateway.closed
    with pytest.raises(ResourceClosed):
        await gateway.query("RETURN 1 AS ok")
    assert_limiters_free(limiter)
