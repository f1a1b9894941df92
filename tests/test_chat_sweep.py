"""One streamed chat, cancelled at every point where it waits on something outside itself.

The chat: ``POST /chat/stream`` through the app's ASGI entry (as Hypercorn calls it),
two tool calls in the model's first turn, run concurrently against the real engine,
a streamed answer in three deltas from the fake LLM on loopback, and the answer
stored in the graph.

Where to cut. Trio's own checkpoints are not a property of this program: how many
times a task waits on a socket depends on how the kernel and the scheduler happen to
split the bytes of the upstream stream and of the engine's answers, so their number
changes from run to run (the task steps of five runs of this chat: 249, 248, 234, 223,
224). What is fixed is where the chat waits on something outside
itself, at our module boundaries; each is a cut point, counted in the order the
chat passes them:

* ``frame``: the route builds an SSE frame (for the chat's events: after the chat
  recorded the event, before the frame is queued for the client);
* ``graph``: a gateway call (``query``/``transaction``) is about to start;
* ``statement``: the gateway sends a statement (the call is on the engine);
* ``embedding``: the embeddings API received a request;
* ``llm-request``: the fake LLM received a request (the client waits for its answer);
* ``llm-event``: the LLM client hands the agent loop a stream event.

A cut cancels the request's whole cancel scope, as a client that leaves does.
What each cut must leave, in the session (fresh for each run):

* before the statement that writes the user's message is sent: no message at all;
* from that statement on (the engine runs a statement it was sent to its end, so
  the message is there even though the call was cancelled), until the answer is
  stored: the user's message and the assistant's, ``interrupted``, with exactly the
  text and tool calls the chat had recorded;
* from the store of the answer on (it is shielded): the assistant's ``complete``.

After every run: no borrowed or waiting token on any limiter, the same tasks as
before, no pending task of the driver, no request in flight at the fake LLM, no
pooled upstream connection in use, and as many connections open at the fake LLM as
the client's pool keeps (every one it let go was seen closed).

One app, one service and one fake of each API serve every run; a run is one chat in a
fresh session (37 points, a few seconds for the whole sweep).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from quart import Quart
from quart.testing.utils import make_test_scope
from werkzeug.datastructures import Headers

from agent_trio.app import _chat_routes, create_app, running_service
from agent_trio.engine import EngineInfo
from agent_trio.graph import _sessions
from agent_trio.service import Service, ServiceHooks, embedding_config
from agent_trio.upstream import open_embedder
from tests.support.chat import CORPUS, chat_settings, data_frames
from tests.support.checks import (
    assert_limiters_free,
    living_tasks,
    pending_driver_tasks,
    upstream_settled,
)
from tests.support.fake_embeddings import FakeEmbeddings
from tests.support.fake_llm import Calls, FakeLlm, Reply, Text
from tests.support.service import running

pytestmark = pytest.mark.engine

QUESTION = "Who acquired Kestrel Labs?"
ANSWER = "Corvid Systems acquired Kestrel Labs."
CALLS = (
    ("hybrid_search", {"query": "Kestrel Labs acquisition", "limit": 3}),
    ("graph_search", {"query": "Kestrel Labs"}),
)
#: uncut runs that must pass the same cut points
SAME_RUNS = 3
#: bound of a wait for a condition that follows from a cut at once (not a measure of speed)
SETTLE = 30


def script(number: int, body: dict[str, Any]) -> Reply:
    """Tools on the user's turn, then the answer in three deltas."""
    if body["messages"][-1]["role"] == "user" and body.get("tools"):
        return Calls(list(CALLS))
    return Text(ANSWER, pieces=3)


@dataclass(frozen=True)
class Point:
    kind: str
    detail: str = ""


class Cuts:
    """Records the cut points a chat passes; cancels the armed scope at the ``at``-th."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self._at = 0
        self._scope: trio.CancelScope | None = None

    def arm(self, at: int, scope: trio.CancelScope | None) -> None:
        self.points, self._at, self._scope = [], at, scope

    def passed(self, kind: str, detail: str = "") -> None:
        self.points.append(Point(kind, detail))
        if len(self.points) == self._at and self._scope is not None:
            self._scope.cancel()


_QUERIES = {_sessions._OPEN_TURN: "open_turn", _sessions._ADD_MESSAGES: "add_message"}


def instrument(service: Service, fake_llm: FakeLlm, fake_emb: FakeEmbeddings, cuts: Cuts) -> None:
    """Make every boundary of a chat report to ``cuts`` (instance attributes: this app only)."""
    gateway = service.graph
    query, store, transaction = gateway.query, gateway.store, gateway.transaction

    async def counted_query(text: str, params: Any = None) -> Any:
        cuts.passed("graph", _QUERIES.get(text, "query"))
        return await query(text, params)

    async def counted_store(text: str, params: Any = None) -> Any:
        cuts.passed("graph", _QUERIES.get(text, "store"))
        return await store(text, params)

    async def counted_transaction(statements: Any) -> Any:
        cuts.passed("graph", "transaction")
        return await transaction(statements)

    gateway.query = counted_query  # type: ignore[method-assign]
    gateway.store = counted_store  # type: ignore[method-assign]
    gateway.transaction = counted_transaction  # type: ignore[method-assign]
    gateway.on_statement = lambda index, count: cuts.passed("statement", f"{index}/{count}")
    fake_emb.on_request = lambda count: cuts.passed("embedding")
    fake_llm.on_request = lambda number: cuts.passed("llm-request")
    llm = service.llm
    assert llm is not None
    stream = llm.stream

    @asynccontextmanager
    async def counted_stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with stream(*args, **kwargs) as events:
            yield _CountedEvents(events, cuts)

    llm.stream = counted_stream  # type: ignore[method-assign]


class _CountedEvents:
    """The events of a stream, each passed as a cut point (a class: no generator to
    finalize when the consumer is cancelled)."""

    def __init__(self, events: AsyncIterator[Any], cuts: Cuts) -> None:
        self._events = events
        self._cuts = cuts

    def __aiter__(self) -> _CountedEvents:
        return self

    async def __anext__(self) -> Any:
        event = await self._events.__anext__()
        self._cuts.passed("llm-event", type(event).__name__)
        await trio.lowlevel.checkpoint()  # a cut here: received, not handed on
        return event


def counted_frames(cuts: Cuts, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _chat_routes.frame

    def counted(kind: str, data: dict[str, Any]) -> bytes:
        detail = data.get("content") or data.get("tool_call_id") or ""
        cuts.passed("frame", f"{kind}:{detail}")
        return frame(kind, data)

    monkeypatch.setattr(_chat_routes, "frame", counted)


async def stream_chat(app: Quart, body: dict[str, Any]) -> list[dict[str, Any]]:
    """``POST /chat/stream`` through the app's ASGI entry, as Hypercorn calls it; the
    client never leaves by itself (a cut cancels this call, as a disconnect would)."""
    headers = Headers({"Content-Type": "application/json", "Host": "sweep.test"})
    scope = make_test_scope("http", "/chat/stream", "POST", headers, b"", "http", "", "1.1", None)
    payload = json.dumps(body).encode()
    requested = False
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)  # type: ignore[arg-type]
    return data_frames(b"".join(parts).decode().splitlines())


@dataclass(frozen=True)
class Expected:
    """What a session holds after a run: ``(role, status)`` pairs, and the answer's
    text and tool call ids when there is one."""

    messages: tuple[tuple[str, str], ...]
    text: str = ""
    tools: tuple[str, ...] = ()


def expected_after(points: Sequence[Point], cut: int) -> Expected:
    """What a cut at the ``cut``-th point (from 1) of ``points`` (an uncut run) leaves."""
    opening = points.index(Point("graph", "open_turn"))
    storing = points.index(Point("graph", "add_message"))
    at = cut - 1
    if at <= opening:
        return Expected(())
    frames = [p.detail.split(":", 1) for p in points[: at + 1] if p.kind == "frame"]
    text = "".join(content for kind, content in frames if kind == "text")
    tools = tuple(call_id for kind, call_id in frames if kind == "tool_call")
    status = "interrupted" if at < storing else "complete"
    return Expected((("user", "complete"), ("assistant", status)), text, tools)


async def session_state(service: Service, session_id: str) -> Expected:
    messages = await service.sessions.messages(session_id)
    pairs = tuple((m.role, m.status) for m in messages)
    answers = [m for m in messages if m.role == "assistant"]
    if not answers:
        return Expected(pairs)
    [answer] = answers
    return Expected(pairs, answer.content, tuple(c["tool_call_id"] for c in answer.tool_calls))


#: the task of one connection to the fake LLM (the test's only ``serve_listeners``)
_FAKE_CONNECTION = "trio._highlevel_serve_listeners._run_handler"


async def assert_nothing_left(
    service: Service, fake: FakeLlm, tasks: list[str], what: object
) -> None:
    with trio.fail_after(SETTLE):
        await fake.wait_until(lambda f: upstream_settled(service, f))
    assert_limiters_free(*service.limiters.values())
    assert await app_tasks() == tasks, what
    assert pending_driver_tasks(service.graph._loop) == [], what


async def app_tasks() -> list[str]:
    """The living tasks but the fake LLM's connections (counted by ``upstream_settled``)."""
    return [n for n in await living_tasks() if "fake_llm" not in n and n != _FAKE_CONNECTION]


@asynccontextmanager
async def sweep_app(
    engine_info: EngineInfo, tmp_path: Path
) -> AsyncIterator[tuple[Quart, Service, FakeLlm, FakeEmbeddings]]:
    fake_llm = FakeLlm([Text("{}")])  # what ingestion's extraction gets
    fake_emb = FakeEmbeddings(dimensions=16)

    def embedder(settings: Any) -> Any:
        return open_embedder(embedding_config(settings), transport=fake_emb.transport())

    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake_llm.serve)
        app = create_app(
            chat_settings(tmp_path, url),
            hooks=ServiceHooks(engine=engine_info, embedder=embedder),
        )
        async with running(app):
            service = running_service(app)
            assert service is not None
            summary = await service.ingestor.ingest_paths([CORPUS])
            assert not summary.failed, summary.failed
            fake_llm.script = script
            yield app, service, fake_llm, fake_emb
        nursery.cancel_scope.cancel()


async def test_a_chat_cut_at_every_point_leaves_a_final_session_and_nothing_else(
    engine_info: EngineInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sweep_app(engine_info, tmp_path) as (app, service, fake_llm, fake_emb):
        cuts = Cuts()
        instrument(service, fake_llm, fake_emb, cuts)
        counted_frames(cuts, monkeypatch)
        reference = await uncut_runs(app, service, cuts)
        assert {p.kind for p in reference} == {
            "frame",
            "graph",
            "statement",
            "embedding",
            "llm-request",
            "llm-event",
        }
        tasks = await app_tasks()
        await assert_nothing_left(service, fake_llm, tasks, "uncut")
        for cut in range(1, len(reference) + 1):
            session_id = f"cut-{cut}"
            with trio.CancelScope() as scope:
                cuts.arm(cut, scope)
                await stream_chat(app, {"message": QUESTION, "session_id": session_id})
            what = f"cut {cut} of {len(reference)}, at {cuts.points[cut - 1]}"
            cuts.arm(0, None)
            assert scope.cancelled_caught, what
            await assert_nothing_left(service, fake_llm, tasks, what)
            assert await session_state(service, session_id) == expected_after(reference, cut), what


async def uncut_runs(app: Quart, service: Service, cuts: Cuts) -> list[Point]:
    """Run the chat :data:`SAME_RUNS` times uncut; return the points of the first run
    once every run passed the same ones (the two tools run concurrently, so their
    points may interleave differently)."""
    runs: list[list[Point]] = []
    for run in range(SAME_RUNS):
        session_id = f"uncut-{run}"
        cuts.arm(0, None)
        frames = await stream_chat(app, {"message": QUESTION, "session_id": session_id})
        runs.append(cuts.points)
        cuts.arm(0, None)
        assert [f["type"] for f in frames] == [
            "session",
            "model",
            "tool_call",
            "tool_call",
            "sources",
            "text",
            "text",
            "text",
            "tools",
            "end",
        ], frames
        assert await session_state(service, session_id) == Expected(
            (("user", "complete"), ("assistant", "complete")), ANSWER, ("call_0", "call_1")
        )
    assert all(sorted(map(repr, r)) == sorted(map(repr, runs[0])) for r in runs), runs
    return runs[0]
