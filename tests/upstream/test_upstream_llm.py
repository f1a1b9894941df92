"""The LLM client against a fake OpenAI-compatible server, on virtual time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
from upstream_support import live_tasks, llm_settings, quick_tuning

from agent_trio import (
    ResourceClosed,
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from agent_trio.service import llm_config
from agent_trio.upstream import (
    LlmClient,
    Message,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    open_llm,
)

Answer = Callable[[int, dict[str, Any]], httpx.Response]


class _Chunks(httpx.AsyncByteStream):
    """A response body sent in pieces, one every ``delay`` seconds; an exception breaks it."""

    def __init__(self, pieces: list[bytes | Exception], delay: float = 0.5) -> None:
        self._pieces = pieces
        self._delay = delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            await trio.sleep(self._delay)
            if isinstance(piece, Exception):
                raise piece
            yield piece


def _sse(*chunks: dict[str, Any] | str) -> list[bytes | Exception]:
    events: list[bytes | Exception] = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk)
        events.append(f"data: {data}\n\n".encode())
    return events


def _delta(**delta: Any) -> dict[str, Any]:
    return {"model": "test-model-0613", "choices": [{"index": 0, "delta": delta}]}


def _finish(reason: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}


class FakeChat:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def transport(self) -> httpx.MockTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/v1/chat/completions"
            body = json.loads(request.content)
            self.bodies.append(body)
            self.headers.append(request.headers)
            return self.answer(len(self.bodies) - 1, body)

        return httpx.MockTransport(handle)


def _stream_response(pieces: list[bytes | Exception]) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=_Chunks(pieces)
    )


async def _collect(
    llm: LlmClient, messages: list[Message], into: list[Any] | None = None
) -> list[Any]:
    received = [] if into is None else into
    async with llm.stream(messages) as events:
        async for event in events:
            received.append(event)
    return received


async def test_complete_with_tools_and_usage(autojump_clock: trio.abc.Clock) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "vector_search", "arguments": '{"query": "trio"}'},
                }
            ],
        }
        return httpx.Response(
            200,
            json={
                "model": "test-model-0613",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
            },
        )

    fake = FakeChat(answer)
    tool = ToolSpec("vector_search", "Search chunks", {"type": "object", "properties": {}})
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        completion = await llm.complete(
            [Message.system("be brief"), Message.user("find trio")],
            tools=[tool],
            response_format={"type": "json_object"},
        )
    assert completion.tool_calls == (ToolCall("call_1", "vector_search", '{"query": "trio"}'),)
    assert completion.tool_calls[0].parsed_arguments() == {"query": "trio"}
    assert completion.usage is not None
    assert completion.usage.total_tokens == 27
    assert completion.model == "test-model-0613"
    assert completion.finish_reason == "tool_calls"
    body = fake.bodies[0]
    assert body["model"] == "test-model"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "find trio"},
    ]
    assert body["tools"] == [tool.to_wire()]
    assert body["response_format"] == {"type": "json_object"}
    assert "stream" not in body
    assert fake.headers[0]["authorization"] == "Bearer sk-test"


async def test_tool_round_trip_messages_on_the_wire() -> None:
    call = ToolCall("call_9", "graph_search", '{"q": "x"}')
    assert Message.assistant(None, [call]).to_wire() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "graph_search", "arguments": '{"q": "x"}'},
            }
        ],
    }
    assert Message.tool("call_9", "[]").to_wire() == {
        "role": "tool",
        "content": "[]",
        "tool_call_id": "call_9",
    }


async def test_stream_text_deltas_and_usage(autojump_clock: trio.abc.Clock) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        return _stream_response(
            [
                b": keep-alive\n\n",
                *_sse(
                    _delta(role="assistant", content=""),
                    _delta(content="Hel"),
                    _delta(content="lo"),
                    _finish("stop"),
                    USAGE,
                    "[DONE]",
                ),
            ]
        )

    fake = FakeChat(answer)
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        events = await _collect(llm, [Message.user("hi")])
        assert llm.statistics().limiter.borrowed == 0
    assert events[:2] == [TextDelta("Hel"), TextDelta("lo")]
    assert len(events) == 3
    end = events[2]
    assert isinstance(end, StreamEnd)
    assert end.completion.content == "Hello"
    assert end.completion.usage is not None
    assert end.completion.usage.prompt_tokens == 12
    assert end.completion.model == "test-model-0613"
    assert end.completion.finish_reason == "stop"
    assert fake.bodies[0]["stream"] is True
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}


async def test_stream_assembles_tool_call_deltas(autojump_clock: trio.abc.Clock) -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return _delta(tool_calls=[{"index": index, **fields}])

    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        return _stream_response(
            _sse(
                call(0, id="call_a", type="function", function={"name": "vector_search"}),
                call(0, function={"arguments": '{"que'}),
                call(0, function={"arguments": 'ry": "a"}'}),
                call(1, id="call_b", type="function", function={"name": "graph_search"}),
                call(1, function={"arguments": '{"query": "b"}'}),
                _finish("tool_calls"),
                "[DONE]",
            )
        )

    fake = FakeChat(answer)
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        events = await _collect(llm, [Message.user("hi")])
    calls = [event.call for event in events if isinstance(event, ToolCallReady)]
    assert calls == [
        ToolCall("call_a", "vector_search", '{"query": "a"}'),
        ToolCall("call_b", "graph_search", '{"query": "b"}'),
    ]
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].completion.tool_calls == tuple(calls)
    assert events[-1].completion.content is None


async def test_stream_is_retried_before_the_first_token(autojump_clock: trio.abc.Clock) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        if number == 0:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        if number == 1:  # the connection breaks before any token
            return _stream_response(
                [*_sse(_delta(role="assistant")), httpx.ReadError("connection reset")]
            )
        return _stream_response(_sse(_delta(content="ok"), _finish("stop"), "[DONE]"))

    fake = FakeChat(answer)
    async with open_llm(
        llm_config(llm_settings()), transport=fake.transport(), tuning=quick_tuning()
    ) as llm:
        assert llm is not None
        events = await _collect(llm, [Message.user("hi")])
        counters = llm.statistics().counters
    assert events[0] == TextDelta("ok")
    assert len(fake.bodies) == 3
    assert counters["server_errors"] == 1
    assert counters["network_errors"] == 1


async def test_stream_is_not_retried_after_the_first_token(
    autojump_clock: trio.abc.Clock,
) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        return _stream_response(
            [
                *_sse(_delta(content="partial"), _delta(content=" answ")),
                httpx.RemoteProtocolError("peer closed connection"),
            ]
        )

    fake = FakeChat(answer)
    received: list[Any] = []
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        with pytest.raises(UpstreamUnavailable, match="broke the stream"):
            await _collect(llm, [Message.user("hi")], into=received)
        assert llm.statistics().limiter.borrowed == 0
    assert received == [TextDelta("partial"), TextDelta(" answ")]
    assert len(fake.bodies) == 1


async def test_stream_cut_short_is_a_protocol_error(autojump_clock: trio.abc.Clock) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        return _stream_response(_sse(_delta(content="half")))  # no finish, no [DONE]

    fake = FakeChat(answer)
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        with pytest.raises(UpstreamProtocolError, match="before the answer was complete"):
            await _collect(llm, [Message.user("hi")])


async def test_cancel_mid_stream_leaves_nothing_behind(autojump_clock: trio.abc.Clock) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        pieces = _sse(*[_delta(content=f"w{i} ") for i in range(100)], _finish("stop"))
        return _stream_response(pieces)

    fake = FakeChat(answer)
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        before = live_tasks()
        received = 0
        with trio.move_on_after(5) as scope:
            async with llm.stream([Message.user("hi")]) as events:
                async for _ in events:
                    received += 1
        assert scope.cancelled_caught
        assert 0 < received < 100
        assert live_tasks() == before
        stats = llm.statistics()
        assert stats.limiter.borrowed == 0
        assert stats.rate.pending == 0


async def test_rejected_request_carries_the_upstream_message(
    autojump_clock: trio.abc.Clock,
) -> None:
    def answer(number: int, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})

    fake = FakeChat(answer)
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        with pytest.raises(UpstreamRejected, match="Incorrect API key") as info:
            await llm.complete([Message.user("hi")])
        with pytest.raises(UpstreamRejected):
            await _collect(llm, [Message.user("hi")])
    assert info.value.status_code == 401
    assert info.value.upstream == "llm"
    assert len(fake.bodies) == 2


async def test_malformed_completion(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeChat(lambda number, body: httpx.Response(200, json={"choices": []}))
    async with open_llm(llm_config(llm_settings()), transport=fake.transport()) as llm:
        assert llm is not None
        with pytest.raises(UpstreamProtocolError, match="no choices"):
            await llm.complete([Message.user("hi")])


async def test_providers_and_lifecycle(autojump_clock: trio.abc.Clock) -> None:
    async with open_llm(llm_config(llm_settings(llm_provider="none"))) as none:
        assert none is None

    def ok(number: int, body: dict[str, Any]) -> httpx.Response:
        message = {"role": "assistant", "content": "fine"}
        return httpx.Response(200, json={"choices": [{"message": message}]})

    fake = FakeChat(ok)
    router = llm_settings(llm_provider="openrouter", llm_base_url="http://router.test/v1")
    async with open_llm(llm_config(router), transport=fake.transport()) as llm:
        assert llm is not None
        assert llm.provider == "openrouter"
        completion = await llm.complete([Message.user("hi")])
    assert completion.content == "fine"
    assert completion.usage is None
    assert fake.headers[0]["x-title"] == "agent-trio"
    assert fake.headers[0]["authorization"] == "Bearer sk-test"
    with pytest.raises(ResourceClosed):
        await llm.complete([Message.user("hi")])
    with pytest.raises(ResourceClosed):
        await _collect(llm, [Message.user("hi")])
    llm.close()  # idempotent
    ollama = llm_settings(
        llm_provider="ollama", llm_base_url="http://ollama.test/v1", llm_api_key=None
    )
    async with open_llm(llm_config(ollama), transport=fake.transport()) as llm:
        assert llm is not None
        await llm.complete([Message.user("hi")])
    assert "authorization" not in fake.headers[1]
