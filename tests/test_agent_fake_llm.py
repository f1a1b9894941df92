"""The fake LLM server (tests/fake_llm.py) through the real LLM client, over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from agent_trio import UpstreamProtocolError, UpstreamUnavailable
from agent_trio.upstream import LlmClient, Message, StreamEnd, TextDelta, ToolCallReady, open_llm
from tests.fake_llm import Calls, Fail, FakeLlm, Garbage, Hold, Script, Text
from tests.upstream.upstream_support import llm_settings, quick_tuning


@asynccontextmanager
async def client_of(script: Script, **settings: Any) -> AsyncIterator[tuple[FakeLlm, LlmClient]]:
    fake = FakeLlm(script)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake.serve)
        values = {"llm_base_url": url, "upstream_max_attempts": 2} | settings
        async with open_llm(
            llm_settings(**values), tuning=quick_tuning(backoff_initial=0.01)
        ) as llm:
            assert llm is not None
            yield fake, llm
        nursery.cancel_scope.cancel()


async def test_streamed_text_and_the_model_per_request() -> None:
    async with client_of([Text("one two three four", pieces=4)]) as (fake, llm):
        deltas = []
        async with llm.stream([Message.user("hi")], model="other-model") as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    deltas.append(event.text)
                else:
                    assert isinstance(event, StreamEnd)
                    assert event.completion.content == "one two three four"
        assert deltas == ["one ", "two ", "three ", "four"]
        assert fake.requests[0]["model"] == "other-model"
        completion = await llm.complete([Message.user("hi")])
        assert completion.content == "one two three four"
        assert fake.requests[1]["model"] == "test-model"


async def test_scripted_tool_calls_streamed_and_whole() -> None:
    calls = Calls([("vector_search", {"query": "q", "limit": 2}), ("graph_search", {"query": "g"})])
    async with client_of([calls]) as (_, llm):
        ready = []
        async with llm.stream([Message.user("hi")]) as events:
            async for event in events:
                if isinstance(event, ToolCallReady):
                    ready.append(event.call)
        assert [c.name for c in ready] == ["vector_search", "graph_search"]
        assert ready[0].parsed_arguments() == {"query": "q", "limit": 2}
        completion = await llm.complete([Message.user("hi")])
        assert [c.name for c in completion.tool_calls] == ["vector_search", "graph_search"]


@pytest.mark.parametrize(
    ("reply", "error", "attempts"),
    [
        (Fail(500), UpstreamUnavailable, 2),  # UPSTREAM_MAX_ATTEMPTS
        (Fail(429, retry_after=0.01), UpstreamUnavailable, 6),  # 429s have 3 x that budget
        (Garbage(), UpstreamProtocolError, 1),  # not retried
    ],
)
async def test_failures(reply: Fail | Garbage, error: type[Exception], attempts: int) -> None:
    async with client_of([reply]) as (fake, llm):
        with pytest.raises(error):
            await llm.complete([Message.user("hi")])
        assert len(fake.requests) == attempts


async def test_the_server_sees_a_client_close_its_connection() -> None:
    release = trio.Event()
    async with client_of([Hold(release)]) as (fake, llm):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(llm.complete, [Message.user("hi")])
            await fake.wait_until(lambda f: f.in_flight == 1)
            assert fake.closed_while_answering == []
            nursery.cancel_scope.cancel()
        with trio.fail_after(5):
            await fake.wait_until(lambda f: f.in_flight == 0)
        assert len(fake.closed_while_answering) == 1
        assert llm.limiter.borrowed_tokens == 0
