"""Chat sessions and messages in the real graph engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio
from trio.testing import wait_all_tasks_blocked

from agent_trio import GraphQueryError
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


# -- answers that end together are written together ------------------------------------


def counting_statements(sessions: SessionStore) -> list[int]:
    """The number of messages in each add-message statement sent from now on."""
    gateway = sessions._gateway
    sizes: list[int] = []
    store = gateway.store

    async def counted(text: str, params: Any = None) -> Any:
        if "UNWIND $rows" in text:
            sizes.append(len(params["rows"]))
        return await store(text, params)

    gateway.store = counted  # type: ignore[method-assign]
    return sizes


async def test_answers_that_end_together_share_a_statement(
    store: tuple[SessionStore, Clock],
) -> None:
    sessions, _ = store
    sizes = counting_statements(sessions)
    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(sessions.add_message, f"g-{n}", "assistant", f"answer {n}")
    assert sum(sizes) == 40  # every message once
    assert len(sizes) < 40  # and fewer statements than messages: the first alone, then the rest
    for n in range(40):
        stored = await sessions.messages(f"g-{n}")
        assert [(m.role, m.content) for m in stored] == [("assistant", f"answer {n}")]


async def test_a_refused_message_fails_alone(store: tuple[SessionStore, Clock]) -> None:
    sessions, _ = store
    gateway = sessions._gateway
    store = gateway.store

    async def refuse_bad(text: str, params: Any = None) -> Any:
        if "UNWIND $rows" in text and any(r["content"] == "bad" for r in params["rows"]):
            raise GraphQueryError("refused")
        return await store(text, params)

    gateway.store = refuse_bad  # type: ignore[method-assign]
    outcomes: dict[str, str] = {}

    async def add(session: str, content: str) -> None:
        try:
            await sessions.add_message(session, "assistant", content)
        except GraphQueryError:
            outcomes[session] = "refused"
        else:
            outcomes[session] = "stored"

    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(add, f"r-{n}", "bad" if n == 3 else f"fine {n}")
    assert outcomes == {f"r-{n}": "refused" if n == 3 else "stored" for n in range(6)}
    assert await sessions.messages("r-3") == []
    assert [m.content for m in await sessions.messages("r-4")] == ["fine 4"]


async def test_a_writer_cancelled_on_the_engine_leaves_the_others_to_the_next(
    store: tuple[SessionStore, Clock],
) -> None:
    """A's statement is held while B, C and D queue; then B writes all three and is
    cancelled while its statement runs. Whether B's batch committed is unknown, so C
    writes C and D again: each stored once (the statement merges on the ids)."""
    sessions, _ = store
    gateway = sessions._gateway
    store = gateway.store
    sizes: list[int] = []
    release_a, b_sent = trio.Event(), trio.Event()

    async def gated(text: str, params: Any = None) -> Any:
        if "UNWIND $rows" in text:
            sizes.append(len(params["rows"]))
            if len(sizes) == 1:
                await release_a.wait()
            elif len(sizes) == 2:
                b_sent.set()
        return await store(text, params)

    gateway.store = gated  # type: ignore[method-assign]
    cut = trio.CancelScope()

    async def b() -> None:
        with cut:
            await sessions.add_message("c-b", "assistant", "cut short")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sessions.add_message, "c-a", "assistant", "answer a")
        await wait_all_tasks_blocked()  # A holds the lock, its statement held
        nursery.start_soon(b)
        await wait_all_tasks_blocked()
        for name in ("c", "d"):
            nursery.start_soon(sessions.add_message, f"c-{name}", "assistant", f"answer {name}")
        await wait_all_tasks_blocked()  # B, C, D queued in that order
        release_a.set()
        await b_sent.wait()
        cut.cancel()
    assert cut.cancelled_caught
    assert sizes == [1, 3, 2]
    for name in ("a", "c", "d"):
        stored = await sessions.messages(f"c-{name}")
        assert [m.content for m in stored] == [f"answer {name}"]
    assert len(await sessions.messages("c-b")) <= 1


async def test_a_writer_cancelled_while_it_waits_writes_nothing(
    store: tuple[SessionStore, Clock],
) -> None:
    sessions, _ = store
    gateway = sessions._gateway
    store = gateway.store
    sizes: list[int] = []
    release = trio.Event()

    async def gated(text: str, params: Any = None) -> Any:
        if "UNWIND $rows" in text:
            sizes.append(len(params["rows"]))
            await release.wait()
        return await store(text, params)

    gateway.store = gated  # type: ignore[method-assign]
    waiter = trio.CancelScope()

    async def waiting() -> None:
        with waiter:
            await sessions.add_message("w-1", "assistant", "never written")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sessions.add_message, "w-0", "assistant", "first")
        await wait_all_tasks_blocked()  # w-0 holds the lock, its statement held
        nursery.start_soon(waiting)
        await wait_all_tasks_blocked()  # w-1 queued, waiting for the lock
        waiter.cancel()
        await wait_all_tasks_blocked()
        release.set()
    assert waiter.cancelled_caught
    await sessions.add_message("w-2", "assistant", "after")
    assert sizes == [1, 1]  # w-0 alone, then w-2 alone: nothing of w-1 was left queued
    assert [m.content for m in await sessions.messages("w-0")] == ["first"]
    assert await sessions.messages("w-1") == []
