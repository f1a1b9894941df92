"""Chat sessions and messages in the real graph engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trio
import trio_asyncio

from agent_trio.engine import EngineInfo
from agent_trio.graph import ArcadeDialect, GraphTarget, SessionStore, open_graph
from tests._engine import own_database

pytestmark = pytest.mark.engine


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)  # every reading is later than the last
        return self.now


@pytest.fixture(scope="session")
def session_database(engine_info: EngineInfo) -> Iterator[EngineInfo]:
    """A database of these tests alone on the session's engine."""
    with own_database(engine_info, "session_tests") as info:
        yield info


@pytest.fixture
async def store(session_database: EngineInfo) -> AsyncIterator[tuple[SessionStore, Clock]]:
    info = session_database
    target = GraphTarget(info.bolt_uri, info.user, info.password, info.database)
    async with (
        httpx.AsyncClient(timeout=30) as http,
        trio_asyncio.open_loop() as loop,
        open_graph(target, loop=loop, limiter=trio.CapacityLimiter(4), query_timeout=30) as graph,
    ):
        dialect = ArcadeDialect(
            http,
            http_url=info.http_url,
            database=info.database,
            user=info.user,
            password=info.password,
        )
        clock = Clock()
        sessions = SessionStore(graph, dialect, ttl=3600, now=clock)
        await sessions.ensure_schema()
        await sessions.ensure_schema()  # idempotent
        await graph.query("MATCH (n) DETACH DELETE n")
        yield sessions, clock


async def test_a_turn_stores_the_user_message_first(
    store: tuple[SessionStore, Clock],
) -> None:
    sessions, _ = store
    turn = await sessions.open_turn("s-1", "hello", user_id="u1", metadata={"k": 1})
    assert turn.created
    assert turn.history == ()
    stored = await sessions.get("s-1")
    assert stored is not None
    assert (stored.user_id, dict(stored.metadata)) == ("u1", {"k": 1})
    [message] = await sessions.messages("s-1")
    assert (message.role, message.content, message.status) == ("user", "hello", "complete")
    assert message.id == turn.user_message.id
    calls = [{"tool_name": "vector_search", "args": {"query": "q"}, "tool_call_id": "c1"}]
    answer = await sessions.add_message(
        "s-1", "assistant", "partial", status="interrupted", tool_calls=calls, message_id="m-2"
    )
    assert answer.id == "m-2"
    second = await sessions.open_turn("s-1", "again", user_id="other")
    assert not second.created
    assert [m.content for m in second.history] == ["partial", "hello"]  # newest first
    messages = await sessions.messages("s-1")
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
    ]
    assert messages[1].to_api()["tool_calls"] == calls
    again = await sessions.get("s-1")
    assert again is not None
    assert again.user_id == "u1"  # the session keeps its first owner
    assert again.updated_at > stored.updated_at


async def test_an_idle_session_expires(store: tuple[SessionStore, Clock]) -> None:
    sessions, clock = store
    await sessions.open_turn("s-2", "first", user_id="early", metadata={"v": 1})
    assert await sessions.get("s-2") is not None
    clock.now += timedelta(seconds=3601)
    assert await sessions.get("s-2") is None
    turn = await sessions.open_turn("s-2", "after a long pause", user_id="late")
    assert turn.created
    assert turn.history == ()
    assert [m.content for m in await sessions.messages("s-2")] == ["after a long pause"]
    restarted = await sessions.get("s-2")
    assert restarted is not None
    assert (restarted.user_id, dict(restarted.metadata)) == ("late", {})
    assert restarted.created_at == turn.user_message.created_at


async def test_an_answer_outlives_its_session(store: tuple[SessionStore, Clock]) -> None:
    """A session deleted while its chat ran is made again by the answer: nothing is lost."""
    sessions, _ = store
    await sessions.open_turn("s-3", "question")
    await sessions._gateway.query("MATCH (s:Session {id: 's-3'}) DELETE s")
    await sessions.add_message("s-3", "assistant", "answer")
    assert await sessions.get("s-3") is not None
    assert [m.content for m in await sessions.messages("s-3")] == ["question", "answer"]


async def test_unknown_session(store: tuple[SessionStore, Clock]) -> None:
    sessions, _ = store
    assert await sessions.get("nobody") is None
    assert await sessions.messages("nobody") == []


async def test_a_reply_is_written_only_after_its_question(
    store: tuple[SessionStore, Clock],
) -> None:
    """``reply_to``: the answer of a turn cut while its question was being written."""
    sessions, _ = store
    await sessions.add_message("s-4", "assistant", "", status="interrupted", reply_to="never")
    assert await sessions.get("s-4") is None
    assert await sessions.messages("s-4") == []
    turn = await sessions.open_turn("s-4", "question", message_id="asked")
    assert turn.user_message.id == "asked"
    await sessions.add_message("s-4", "assistant", "", status="interrupted", reply_to="asked")
    messages = await sessions.messages("s-4")
    assert [(m.role, m.status, m.content) for m in messages] == [
        ("user", "complete", "question"),
        ("assistant", "interrupted", ""),
    ]
    assert messages[0].id == "asked"
