"""The LLM client: OpenAI-compatible ``/chat/completions``, plain and streaming.

The providers differ only in defaults and headers: ``openai`` (any OpenAI-compatible
server), ``ollama`` (no key needed) and ``openrouter`` (attribution headers).
A stream is retried only until its first token; after that an error reaches the
consumer as :class:`~agent_trio.UpstreamUnavailable` (or ``UpstreamProtocolError``).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from agent_trio._errors import UpstreamProtocolError, UpstreamUnavailable
from agent_trio.upstream._connect import UpstreamConfig, open_upstream
from agent_trio.upstream._messages import (
    Completion,
    Message,
    StreamEnd,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
)
from agent_trio.upstream._sse import DeltaAssembler, LineReader, SseDecoder
from agent_trio.upstream._upstream import Upstream, UpstreamStats, UpstreamTuning

__all__ = ["LlmClient", "LlmConfig", "open_llm"]

_NAME = "llm"


@dataclass(frozen=True)
class LlmConfig:
    """Which chat-completions API and model (``LLM_PROVIDER=none`` has none: no config)."""

    provider: Literal["openai", "ollama", "openrouter"]
    model: str
    upstream: UpstreamConfig


class LlmClient:
    """Chat completions through one :class:`Upstream` (limits, rate, breaker, retries)."""

    def __init__(self, upstream: Upstream, *, provider: str, model: str) -> None:
        self._upstream = upstream
        self.provider = provider
        self.model = model
        self.limiter = upstream.limiter
        self.stream_usage = True  # ask for usage in the last chunk (stream_options)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] | None = None,
        response_format: dict[str, Any] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> Completion:
        """One completion; ``model`` overrides the configured one for this request."""
        body = self._body(messages, tools, response_format, tool_choice, temperature, max_tokens)
        if model is not None:
            body["model"] = model
        return await self._upstream.post_json("chat/completions", body, self._parse)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] | None = None,
        response_format: dict[str, Any] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        """``async with llm.stream(messages) as events: async for event in events: ...``

        Events: :class:`TextDelta` as text arrives, :class:`ToolCallReady` per finished
        tool call, and one :class:`StreamEnd` (the whole :class:`Completion`) last.
        ``model`` overrides the configured one for this request.
        """
        body = self._body(messages, tools, response_format, tool_choice, temperature, max_tokens)
        if model is not None:
            body["model"] = model
        body["stream"] = True
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return self._open_stream(body)

    def statistics(self) -> UpstreamStats:
        return self._upstream.statistics()

    @property
    def closed(self) -> bool:
        return self._upstream.closed

    def close(self) -> None:
        self._upstream.close()

    # -- requests and answers --------------------------------------------------
    def _body(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None,
        response_format: dict[str, Any] | None,
        tool_choice: str | dict[str, Any] | None,
        temperature: float | None,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        if not messages:
            raise ValueError("a chat completion needs at least one message")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_wire() for message in messages],
        }
        optional = {
            "tools": [tool.to_wire() for tool in tools] if tools else None,
            "tool_choice": tool_choice if tools else None,
            "response_format": response_format,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body

    def _parse(self, data: Any) -> Completion:
        if isinstance(data, dict) and "choices" not in data and data.get("error"):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamUnavailable(
                f"{_NAME} upstream answered with an error: {message}", upstream=_NAME
            )
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _malformed("no choices in the answer")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise _malformed("the first choice has no message")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise _malformed("the message content is not text")
        return Completion(
            content=content,
            tool_calls=_tool_calls(message.get("tool_calls")),
            usage=Usage.from_wire(data.get("usage")),
            model=data.get("model") or self.model,
            finish_reason=choices[0].get("finish_reason"),
        )

    @asynccontextmanager
    async def _open_stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        model = body["model"]
        opening = self._upstream.stream_json(
            "chat/completions",
            body,
            lambda response: self._first_token(response, model),
            headers=headers,
        )
        async with opening as events:
            try:
                yield events
            finally:
                await events.aclose()

    async def _first_token(self, response: httpx.Response, model: str) -> _EventStream:
        events = _EventStream(response, DeltaAssembler(_NAME, model))
        try:
            await events.read_first_token()
        except BaseException:
            await events.aclose()
            raise
        return events


class _EventStream:
    """The events of one open stream (an iterator class: no generator to finalize).

    Before the first token, transport errors propagate raw so that the upstream's
    retry loop can classify and retry them; after it, they are mapped here.
    """

    def __init__(self, response: httpx.Response, assembler: DeltaAssembler) -> None:
        self._lines = LineReader(response)
        self._assembler = assembler
        self._decoder = SseDecoder()
        self._pending: deque[StreamEvent] = deque()
        self._live = False
        self._ended = False
        self._eof = False

    async def read_first_token(self) -> None:
        while not (self._assembler.started or self._assembler.finished):
            if self._eof:
                raise UpstreamUnavailable(
                    f"{_NAME} upstream closed the stream before the first token",
                    upstream=_NAME,
                )
            await self._pull()
        self._live = True

    def __aiter__(self) -> _EventStream:
        return self

    async def aclose(self) -> None:
        """Finalize the line reader (the response itself is closed by its owner)."""
        await self._lines.aclose()

    async def __anext__(self) -> StreamEvent:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            try:
                await self._pull()
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise UpstreamUnavailable(
                    f"{_NAME} upstream broke the stream: {type(exc).__name__}: {exc}",
                    upstream=_NAME,
                ) from exc
        return self._pending.popleft()

    async def _pull(self) -> None:
        """Read until one event's data is complete (or the end), queueing what it yields."""
        while not self._eof:
            line = await self._lines.next_line()
            if line is None:
                self._eof = True
                data = None if self._assembler.done else self._decoder.flush()
            elif self._assembler.done:
                continue  # after [DONE]: read to the end, so the body is consumed
            else:
                data = self._decoder.feed(line)
            if data is not None:
                self._pending.extend(self._assembler.feed(data))
                if not self._assembler.done:
                    return
        if self._live or self._assembler.finished:
            self._finish()

    def _finish(self) -> None:
        if self._ended:
            return
        self._pending.extend(self._assembler.leftover_events())
        end: StreamEnd = self._assembler.end()  # raises if the stream was cut short
        self._pending.append(end)
        self._ended = True


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _malformed("'tool_calls' is not a list")
    calls = []
    for index, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _malformed(f"tool call {index} has no function name")
        arguments = function.get("arguments", "")
        if isinstance(arguments, dict):  # some servers send the object, not its JSON text
            arguments = json.dumps(arguments)
        if not isinstance(arguments, str):
            raise _malformed(f"tool call {index} has arguments that are not text")
        call_id = item.get("id") if isinstance(item.get("id"), str) else f"call_{index}"
        calls.append(ToolCall(id=call_id, name=function["name"], arguments=arguments))
    return tuple(calls)


def _malformed(what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"{_NAME} upstream sent a malformed answer: {what}", upstream=_NAME
    )


@asynccontextmanager
async def open_llm(
    config: LlmConfig | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    tuning: UpstreamTuning | None = None,
) -> AsyncIterator[LlmClient | None]:
    """The configured LLM client, or None without a config (extractive answers)."""
    if config is None:
        yield None
        return
    async with open_upstream(
        _NAME, config.upstream, transport=transport, tuning=tuning
    ) as upstream:
        llm = LlmClient(upstream, provider=config.provider, model=config.model)
        try:
            yield llm
        finally:
            llm.close()
