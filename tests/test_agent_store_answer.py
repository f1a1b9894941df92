"""How long a chat waits to store its answer, on the Trio clock.

The graph is replaced by a session store whose writes take as long as a test says
(a busy graph: many answers ending at once queue for its slots). No engine is
involved, so time is virtual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from agent_trio import GraphUnavailable
from agent_trio.agent import Chat, ChatRequest
from agent_trio.agent._chat import FINAL_WRITE_DEADLINE, STORE_DEADLINE
from agent_trio.agent._events import ChatEvent, Transcript
from agent_trio.graph import MessageRow, SessionRow, Turn


@dataclass
class SlowSessions:
    """A session store whose assistant-message write takes ``write_seconds``."""

    write_seconds: float
    stored: list[tuple[str, str]] = field(default_factory=list)  # (status, text)

    async def open_turn(self, session_id: str, content: str, **_: Any) -> Turn:
        session = SessionRow(session_id, None, {}, "t0", "t0")
        user = MessageRow("m0", session_id, "user", content, "complete", (), "t0")
        return Turn(session=session, created=True, history=(), user_message=user)

    async def add_message(
        self, session_id: str, role: str, content: str, *, status: str, **_: Any
    ) -> None:
        await trio.sleep(self.write_seconds)
        self.stored.append((status, content))


class EmptySearch:
    """A searcher that finds nothing, at once."""

    async def hybrid(self, query: str, limit: int) -> list[Any]:
        return []

    async def vector(self, query: str, limit: int) -> list[Any]:
        return []

    async def graph(self, query: str, limit: int) -> list[Any]:
        return []


def chat_on(sessions: SlowSessions) -> Chat:
    return Chat(
        searcher=EmptySearch(),  # type: ignore[arg-type]
        knowledge=None,  # type: ignore[arg-type]
        sessions=sessions,  # type: ignore[arg-type]
        llm=None,
        max_steps=4,
        deadline=120.0,
    )


async def ignore(event: ChatEvent) -> None:
    pass


def request() -> ChatRequest:
    return ChatRequest(message="who acquired the startup?", session_id="s-1")


async def test_a_finished_answer_waits_for_a_busy_graph(autojump_clock: trio.abc.Clock) -> None:
    # much longer than the deadline of an interrupted answer, within that of a finished one
    sessions = SlowSessions(write_seconds=FINAL_WRITE_DEADLINE * 3)
    assert sessions.write_seconds < STORE_DEADLINE
    started = trio.current_time()
    result = await chat_on(sessions).run(request(), Transcript(), ignore)
    assert [status for status, _ in sessions.stored] == ["complete"]
    assert trio.current_time() - started == pytest.approx(sessions.write_seconds)
    assert result.session_id == "s-1"


async def test_a_finished_answer_the_graph_never_stores_is_an_outage(
    autojump_clock: trio.abc.Clock,
) -> None:
    sessions = SlowSessions(write_seconds=STORE_DEADLINE * 2)
    started = trio.current_time()
    with pytest.raises(GraphUnavailable, match="did not store the answer"):
        await chat_on(sessions).run(request(), Transcript(), ignore)
    assert trio.current_time() - started == pytest.approx(STORE_DEADLINE)
    assert sessions.stored == []


async def run_interrupted(sessions: SlowSessions) -> float:
    """Run a chat, cancel it while it searches; the time the run took after the cancel."""
    gate = trio.Event()  # never set: the search waits until cancelled

    class Blocked(EmptySearch):
        async def hybrid(self, query: str, limit: int) -> list[Any]:
            await gate.wait()
            return []

    chat = chat_on(sessions)
    chat._extractive._searcher = Blocked()  # type: ignore[assignment]
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat.run, request(), Transcript(), ignore)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            cancelled_at = trio.current_time()
    return trio.current_time() - cancelled_at


async def test_an_interrupted_answer_gets_its_short_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    sessions = SlowSessions(write_seconds=FINAL_WRITE_DEADLINE / 2)
    took = await run_interrupted(sessions)
    # the write of the interrupted answer ran to its end, shielded
    assert [status for status, _ in sessions.stored] == ["interrupted"]
    assert took == pytest.approx(sessions.write_seconds)

    slower = SlowSessions(write_seconds=FINAL_WRITE_DEADLINE * 2)
    took = await run_interrupted(slower)
    assert slower.stored == []  # given up after its deadline, not the longer one
    assert took == pytest.approx(FINAL_WRITE_DEADLINE)
