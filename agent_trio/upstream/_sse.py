"""Server-sent events from ``/chat/completions`` with ``stream: true``.

:class:`SseDecoder` turns lines into the ``data`` of each event; :class:`DeltaAssembler`
turns the OpenAI chunk objects into :data:`StreamEvent` values: text deltas as they
come, tool calls once the model has finished writing them (their ``arguments``
arrive in pieces, keyed by ``index``), and a final :class:`StreamEnd`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from agent_trio._errors import UpstreamProtocolError, UpstreamUnavailable
from agent_trio.upstream._messages import (
    Completion,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    Usage,
)

__all__ = ["DONE", "DeltaAssembler", "LineReader", "SseDecoder"]

DONE = "[DONE]"
#: finalizing a stream's iterator is local work; bounded all the same
_CLOSE_DEADLINE = 5.0
#: buffered chunks read (and dropped) at most while a left stream is unwound
_UNWIND_CHUNKS = 1000


class LineReader:
    """Lines of a streamed body, read through one iterator that :meth:`aclose` finalizes.

    (httpx's ``aiter_lines`` nests four async generators, which Trio reports when a
    stream is left early; this reads ``aiter_raw`` and splits lines itself. Streams are
    requested with ``Accept-Encoding: identity``; an encoded body still works, through
    ``aiter_bytes``.)
    """

    def __init__(self, response: httpx.Response) -> None:
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        self._chunks: AsyncIterator[bytes] = (
            response.aiter_bytes() if encoded else response.aiter_raw()
        )
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._lines: list[str] = []
        self._eof = False

    async def next_line(self) -> str | None:
        """The next line without its ending, or None at the end of the body."""
        while not self._lines:
            if self._eof:
                if self._buffer:
                    line, self._buffer = self._buffer, ""
                    return line
                return None
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                self._split(self._text.decode(b"", final=True))
                continue
            self._split(self._text.decode(chunk))
        return self._lines.pop(0)

    def _split(self, text: str) -> None:
        self._buffer += text
        # a trailing "\r" may be the first half of "\r\n": keep it until more arrives
        cut = len(self._buffer) - 1 if self._buffer.endswith("\r") and not self._eof else None
        lines = self._buffer[:cut].splitlines(keepends=True)
        rest = self._buffer[cut:] if cut is not None else ""
        if lines and not lines[-1].endswith(("\n", "\r")):
            rest = lines.pop() + rest
        self._lines.extend(line.rstrip("\r\n") for line in lines)
        self._buffer = rest

    async def aclose(self) -> None:
        """Finish the body's iterators: shielded, bounded, idempotent.

        httpx reads a body through a chain of async generators (its own and
        httpcore's). Closing the outermost one leaves the others suspended at their
        ``yield`` for the garbage collector, which Trio reports, when the body was
        left between two reads (a chat cancelled while it handled an event). So the
        chain is first unwound from the inside: the next reads run under a cancelled
        scope, and the innermost generator raises at its socket read, which ends
        every generator around it (chunks already buffered are read and dropped).
        """
        with trio.move_on_after(_CLOSE_DEADLINE, shield=True):
            if not self._eof:
                self._eof = True
                await self._unwind()
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _unwind(self) -> None:
        with trio.CancelScope() as unwinding:
            unwinding.cancel()
            try:
                for _ in range(_UNWIND_CHUNKS):
                    await self._chunks.__anext__()
            except (StopAsyncIteration, httpx.HTTPError):
                pass  # the chain has ended


class SseDecoder:
    """Feed it lines (without line endings); it returns the data of each complete event."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None  # event:, id:, retry: and unknown fields are not used here

    def flush(self) -> str | None:
        """The last event, if the stream ended without its blank line."""
        return self.feed("")


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class DeltaAssembler:
    def __init__(self, upstream: str, model: str) -> None:
        self._upstream = upstream
        self.model = model
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.started = False  # a token (text or tool call) has arrived
        self.done = False  # [DONE] seen
        self._calls_sent = False

    def feed(self, data: str) -> list[StreamEvent]:
        """One event's data; returns the events it completes."""
        if data.strip() == DONE:
            self.done = True
            return self._ready_calls()
        chunk = self._decode(data)
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        usage = Usage.from_wire(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        events: list[StreamEvent] = []
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise self._malformed("'choices' is not a list")
        for choice in choices[:1]:
            events.extend(self._feed_choice(choice))
        return events

    @property
    def finished(self) -> bool:
        return self.done or self.finish_reason is not None

    def end(self) -> StreamEnd:
        if not self.finished:
            raise UpstreamProtocolError(
                f"{self._upstream} upstream ended the stream before the answer was complete",
                upstream=self._upstream,
            )
        return StreamEnd(
            Completion(
                content="".join(self._text) if self._text else None,
                tool_calls=self._tool_calls(),
                usage=self.usage,
                model=self.model,
                finish_reason=self.finish_reason,
            )
        )

    def leftover_events(self) -> list[StreamEvent]:
        return self._ready_calls()

    # -- internals -------------------------------------------------------------
    def _decode(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._malformed(f"an event is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise self._malformed("an event is not a JSON object")
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamUnavailable(
                f"{self._upstream} upstream reported an error in the stream: {message}",
                upstream=self._upstream,
            )
        return chunk

    def _feed_choice(self, choice: Any) -> list[StreamEvent]:
        if not isinstance(choice, dict):
            raise self._malformed("a choice is not an object")
        events: list[StreamEvent] = []
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise self._malformed("'delta' is not an object")
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.started = True
            self._text.append(content)
            events.append(TextDelta(content))
        for position, call_delta in enumerate(delta.get("tool_calls") or []):
            self._feed_call(position, call_delta)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.finish_reason = reason
            events.extend(self._ready_calls())
        return events

    def _feed_call(self, position: int, call_delta: Any) -> None:
        if not isinstance(call_delta, dict):
            raise self._malformed("a tool call delta is not an object")
        index = call_delta.get("index", position)
        if not isinstance(index, int):
            raise self._malformed("a tool call delta has a non-integer index")
        self.started = True
        partial = self._calls.setdefault(index, _PartialCall())
        if isinstance(call_delta.get("id"), str) and call_delta["id"]:
            partial.id = call_delta["id"]
        function = call_delta.get("function") or {}
        if isinstance(function.get("name"), str) and function["name"] and not partial.name:
            partial.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            partial.arguments.append(arguments)
        elif isinstance(arguments, dict):  # some servers send the object whole
            partial.arguments.append(json.dumps(arguments))

    def _tool_calls(self) -> tuple[ToolCall, ...]:
        calls = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise self._malformed(f"tool call {index} has no function name")
            calls.append(
                ToolCall(
                    id=partial.id or f"call_{index}",
                    name=partial.name,
                    arguments="".join(partial.arguments),
                )
            )
        return tuple(calls)

    def _ready_calls(self) -> list[StreamEvent]:
        if self._calls_sent or not self._calls:
            return []
        self._calls_sent = True
        return [ToolCallReady(call) for call in self._tool_calls()]

    def _malformed(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"{self._upstream} upstream sent a malformed stream: {what}",
            upstream=self._upstream,
        )
