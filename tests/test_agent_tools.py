"""Tools and frames without the engine: deadlines on the Trio clock, argument checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from agent_trio import GraphUnavailable
from agent_trio.agent import TOOL_SPECS, Toolbox
from agent_trio.app._chat_routes import PING_INTERVAL, Frames, frame
from agent_trio.graph import ChunkHit
from agent_trio.upstream import ToolCall


class StubSearcher:
    """Answers ``hybrid`` after ``delay`` seconds (forever if None); ``graph`` fails."""

    def __init__(self, delays: dict[str, float | None]) -> None:
        self.delays = delays

    async def hybrid(
        self, query: str, limit: int = 10, text_weight: float | None = None
    ) -> list[ChunkHit]:
        delay = self.delays[query]
        if delay is None:
            await trio.sleep_forever()
        await trio.sleep(delay or 0.0)
        return [ChunkHit("c", "d", f"about {query}", 0.5, 0.5, {}, "T", "t.md")]

    async def graph(self, query: str, limit: int = 10) -> list[Any]:
        raise GraphUnavailable("graph database unavailable: test")


def toolbox(delays: dict[str, float | None]) -> Toolbox:
    return Toolbox(StubSearcher(delays), None, deadline=30.0)  # type: ignore[arg-type]


def call(n: int, name: str, **args: Any) -> ToolCall:
    return ToolCall(f"call_{n}", name, json.dumps(args))


async def test_each_call_has_its_own_deadline(autojump_clock: trio.abc.Clock) -> None:
    tools = toolbox({"slow": None, "quick": 2.0})
    start = trio.current_time()
    outcomes = await tools.run_all(
        [call(0, "hybrid_search", query="slow"), call(1, "hybrid_search", query="quick")]
    )
    assert trio.current_time() - start == 30.0  # not 32: they ran side by side
    assert outcomes[0].error == "hybrid_search did not finish within 30 s"
    assert json.loads(outcomes[1].content)["results"][0]["content"] == "about quick"
    assert [s.chunk_id for s in outcomes[1].sources] == ["c"]


async def test_bad_arguments_are_error_results(autojump_clock: trio.abc.Clock) -> None:
    tools = toolbox({})
    cases = {
        '{"query": ""}': "query",
        '{"query": "x", "limit": 0}': "limit",
        '{"query": "x", "text_weight": 2}': "text_weight",
        '{"query": "x", "bogus": 1}': "bogus",
        "[1, 2]": "bad arguments",
        "{not json": "bad arguments",
    }
    for arguments, needle in cases.items():
        outcome = await tools.run("hybrid_search", arguments)
        assert outcome.error is not None
        assert needle in outcome.error, (arguments, outcome.error)
        assert json.loads(outcome.content) == {"error": outcome.error}
    unknown = await tools.run("drop_database", "{}")
    assert unknown.error == "there is no tool named 'drop_database'"


async def test_an_outage_ends_the_turn(autojump_clock: trio.abc.Clock) -> None:
    tools = toolbox({"quick": 1.0})
    with pytest.raises(GraphUnavailable):
        await tools.run_all(
            [call(0, "hybrid_search", query="quick"), call(1, "graph_search", query="q")]
        )


def test_tool_specs_are_json_schema_objects() -> None:
    names = [spec.name for spec in TOOL_SPECS]
    assert names == [
        "vector_search",
        "graph_search",
        "hybrid_search",
        "get_document",
        "list_documents",
        "get_entity_relationships",
        "get_entity_timeline",
    ]
    for spec in TOOL_SPECS:
        wire = spec.to_wire()
        assert wire["type"] == "function"
        parameters = wire["function"]["parameters"]
        assert parameters["type"] == "object"
        assert set(parameters["required"]) <= set(parameters["properties"])


def test_a_frame_names_its_event_and_repeats_it_as_type() -> None:
    assert frame("text", {"content": "héllo"}) == (
        'event: text\ndata: {"type": "text", "content": "héllo"}\n\n'.encode()
    )


async def test_a_stream_pings_every_fifteen_seconds(autojump_clock: trio.abc.Clock) -> None:
    """Pings keep their pace whether frames flow or not; the end of the chat ends them."""
    send, receive = trio.open_memory_channel[bytes](10)
    sent: list[tuple[float, bytes]] = []

    async def chat() -> None:
        async with send:
            await trio.sleep(PING_INTERVAL * 2 + 5)
            await send.send(b"data: one\n\n")
            await trio.sleep(PING_INTERVAL + 1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(chat)
        async for data in Frames(receive):
            sent.append((trio.current_time(), data))
    ping = b": ping\n\n"
    assert sent == [
        (PING_INTERVAL, ping),
        (2 * PING_INTERVAL, ping),
        (2 * PING_INTERVAL + 5, b"data: one\n\n"),
        (3 * PING_INTERVAL, ping),
    ]
