"""A fake OpenAI-compatible ``/chat/completions`` server on loopback (h11 on Trio).

A real HTTP server, so the real LLM client (httpx, retries, streaming) and the real
TCP connection are exercised: the server sees when a client closes its connection.
Tests and benchmarks use it alike (benchmarks: ``python -m tests.support.fake_llm``).

What it answers is scripted, per request, by a :data:`Script`: a list of replies
taken in order (the last one repeats), or a function of the request number (from 0)
and the decoded request body. Replies:

* :class:`Text`: an answer, streamed in ``pieces`` deltas (``delay`` seconds before
  each; with ``pause``, the rest waits after the first until the event is set) when
  the request asks for a stream, else one JSON completion;
* :class:`Calls`: tool calls (``(name, arguments)`` pairs), optionally after text;
* :class:`Fail`: an HTTP error status (429 with ``Retry-After``, 500, ...);
* :class:`Garbage`: a 200 whose body is not what the protocol says;
* :class:`Hold`: wait until its event is set, then give its reply (a stalled
  upstream that a test releases);
* :class:`Stall`: wait ``seconds`` before the head, then give its reply (a slow or
  hung upstream, which the client's per-attempt deadline cuts);
* :class:`Cut`: close the connection without a response, or (to a stream) after
  ``after`` chunks of its reply (a connection reset).

:class:`FakeLlm` counts requests, keeps their bodies, tracks requests in flight
(and the most at once), and records each connection a client closed while a reply
was being given (``closed_while_answering``, with the time it was seen).
``on_request(number)``, if set, is called as each request arrives (from 0), before
any of its reply is sent.
:meth:`FakeLlm.wait_until` blocks until a condition on these holds.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

__all__ = [
    "Calls",
    "Cut",
    "Fail",
    "FakeLlm",
    "Garbage",
    "Hold",
    "Reply",
    "Script",
    "Stall",
    "Text",
    "agentic_script",
    "serve_fake_llm",
]


@dataclass(frozen=True)
class Text:
    text: str = "ok"
    pieces: int = 1
    delay: float = 0.0
    pause: trio.Event | None = None


@dataclass(frozen=True)
class Calls:
    calls: Sequence[tuple[str, dict[str, Any]]]
    text: str = ""
    delay: float = 0.0


@dataclass(frozen=True)
class Fail:
    status: int = 500
    retry_after: float | None = None
    message: str = "injected failure"


@dataclass(frozen=True)
class Garbage:
    body: bytes = b"this is not json"
    content_type: str = "application/json"


@dataclass(frozen=True)
class Hold:
    release: trio.Event
    then: Text | Calls = field(default_factory=Text)


@dataclass(frozen=True)
class Stall:
    seconds: float
    then: Text | Calls = field(default_factory=Text)


@dataclass(frozen=True)
class Cut:
    after: int = 0
    then: Text | Calls = field(default_factory=Text)


Reply = Text | Calls | Fail | Garbage | Hold | Stall | Cut
#: what reading or writing a connection raises once the client has left
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)
Script = Sequence[Reply] | Callable[[int, dict[str, Any]], Reply]


def agentic_script(tool: str = "hybrid_search", answer: str = "The answer.") -> Script:
    """A stateless script: a user's turn gets one tool call, a tool result gets text."""

    def reply(number: int, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]
        if last.get("role") == "user" and body.get("tools"):
            return Calls([(tool, {"query": last.get("content") or "", "limit": 3})])
        return Text(answer, pieces=max(1, len(answer.split())))

    return reply


class FakeLlm:
    """The server's state. Start it with ``base_url = await nursery.start(llm.serve)``."""

    def __init__(
        self, script: Script = (Text(),), *, model: str = "fake-model", keep_bodies: bool = True
    ) -> None:
        self.script = script
        self.model = model
        #: the bodies of the requests (empty ones without ``keep_bodies``: a soak's
        #: memory stays the server's)
        self.requests: list[dict[str, Any]] = []
        self.keep_bodies = keep_bodies
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.closed_while_answering: list[float] = []
        self.on_request: Callable[[int], None] | None = None
        self._changed = trio.Event()

    # -- observing -------------------------------------------------------------
    async def wait_until(self, condition: Callable[[FakeLlm], bool]) -> None:
        """Return once ``condition(self)`` holds (checked after every change)."""
        while not condition(self):
            await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- serving ---------------------------------------------------------------
    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on 127.0.0.1 until cancelled; ``task_status`` gets the base URL (``/v1``)."""
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        bound = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            task_status.started(f"http://127.0.0.1:{bound}/v1")

    def _reply_for(self, number: int, body: dict[str, Any]) -> Reply:
        if callable(self.script):
            return self.script(number, body)
        replies = list(self.script)
        return replies[min(number, len(replies) - 1)]

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = _Conn(stream)
        self.connections += 1
        self._touch()
        try:
            await self._requests(conn)
        except* _PEER_GONE:
            pass  # the client went away, also while a reply was given (inside its nursery)
        finally:
            self.connections -= 1
            self._touch()
            await stream.aclose()

    async def _requests(self, conn: _Conn) -> None:
        while True:
            request = await conn.next_event()
            if not isinstance(request, h11.Request):
                return
            raw = b""
            while isinstance(event := await conn.next_event(), h11.Data):
                raw += event.data
            if not await self._answer(conn, request, raw):
                return
            if conn.h11.our_state is h11.MUST_CLOSE:
                return
            conn.h11.start_next_cycle()

    async def _answer(self, conn: _Conn, request: h11.Request, raw: bytes) -> bool:
        """Answer one request; False if the client closed the connection meanwhile."""
        if not request.target.endswith(b"/chat/completions"):
            await conn.send_json(404, {"error": {"message": "not found"}})
            return True
        body = json.loads(raw)
        number = len(self.requests)
        self.requests.append(body if self.keep_bodies else {})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._touch()
        try:
            if self.on_request is not None:
                self.on_request(number)
            try:
                async with trio.open_nursery() as nursery:
                    watch = nursery.cancel_scope
                    nursery.start_soon(self._watch_close, conn, watch)
                    await self._give(conn, self._reply_for(number, body), bool(body.get("stream")))
                    watch.cancel()
            except* _PEER_GONE:  # a reset while the reply is written: the client left
                if not conn.peer_closed:  # else the watch recorded it
                    conn.peer_closed = True
                    self.closed_while_answering.append(trio.current_time())
            return not conn.peer_closed
        finally:
            self.in_flight -= 1
            self._touch()

    async def _watch_close(self, conn: _Conn, scope: trio.CancelScope) -> None:
        if await conn.read_until_closed() and not conn.was_reset:
            self.closed_while_answering.append(trio.current_time())
            self._touch()
            scope.cancel()

    async def _give(self, conn: _Conn, reply: Reply, stream: bool) -> None:
        if isinstance(reply, Hold):
            await reply.release.wait()
            reply = reply.then
        elif isinstance(reply, Stall):
            await trio.sleep(reply.seconds)
            reply = reply.then
        if isinstance(reply, Cut):
            if stream and reply.after > 0:
                await conn.send_stream(self._chunks(reply.then)[: reply.after], complete=False)
            await conn.reset()
        elif isinstance(reply, Fail):
            headers = {} if reply.retry_after is None else {"retry-after": f"{reply.retry_after}"}
            await conn.send_json(reply.status, {"error": {"message": reply.message}}, headers)
        elif isinstance(reply, Garbage):
            await conn.send_raw(200, reply.body, reply.content_type)
        elif stream:
            await conn.send_stream(self._chunks(reply))
        else:
            await conn.send_json(200, self._completion(reply))

    def _completion(self, reply: Text | Calls) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if isinstance(reply, Calls):
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": _function(name, args)}
                for i, (name, args) in enumerate(reply.calls)
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def _chunks(self, reply: Text | Calls) -> list[tuple[float | trio.Event, dict[str, Any]]]:
        """(delay before it, or an event to wait for, chunk) for each streamed chunk."""
        out: list[tuple[float | trio.Event, dict[str, Any]]] = []
        pieces = _split(reply.text, reply.pieces if isinstance(reply, Text) else 1)
        pause = reply.pause if isinstance(reply, Text) else None
        for n, piece in enumerate(pieces):
            before = pause if n == 1 and pause is not None else reply.delay
            out.append((before, self._chunk({"content": piece})))
        if isinstance(reply, Calls):
            for i, (name, args) in enumerate(reply.calls):
                call = {"index": i, "id": f"call_{i}", "type": "function"}
                out.append(
                    (
                        reply.delay,
                        self._chunk({"tool_calls": [call | {"function": _function(name, args)}]}),
                    )
                )
        out.append((0.0, self._chunk({}, finish=_finish(reply))))
        return out

    def _chunk(self, delta: dict[str, Any], *, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }


def _function(name: str, args: dict[str, Any]) -> dict[str, str]:
    return {"name": name, "arguments": json.dumps(args)}


def _finish(reply: Text | Calls) -> str:
    return "tool_calls" if isinstance(reply, Calls) else "stop"


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    if pieces <= 1:
        return [text]
    words = text.split(" ")
    size = max(1, -(-len(words) // pieces))
    parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [p + " " for p in parts[:-1]] + parts[-1:]


class _Conn:
    """One HTTP/1.1 connection; bytes read while watching for a close are kept."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER)
        self.peer_closed = False
        self.was_reset = False

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.peer_closed:
                return h11.ConnectionClosed()
            self.h11.receive_data(await self.stream.receive_some(65536))

    async def read_until_closed(self) -> bool:
        """True once the peer closed; data that arrives first is kept for h11."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.peer_closed = True
                return True
            self.h11.receive_data(data)

    async def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a crashed or cut upstream does."""
        self.was_reset = True
        self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()
        self.peer_closed = True

    async def _send(self, event: Any) -> None:
        await self.stream.send_all(self.h11.send(event) or b"")

    async def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        await self.send_raw(status, json.dumps(obj).encode(), "application/json", headers)

    async def send_raw(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        head = [("content-type", content_type), ("content-length", str(len(payload)))]
        head += list((headers or {}).items())
        await self._send(h11.Response(status_code=status, headers=head))
        await self._send(h11.Data(data=payload))
        await self._send(h11.EndOfMessage())

    async def send_stream(
        self, chunks: list[tuple[float | trio.Event, dict[str, Any]]], *, complete: bool = True
    ) -> None:
        head = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        await self._send(h11.Response(status_code=200, headers=head))
        for before, chunk in chunks:
            if isinstance(before, trio.Event):
                await before.wait()
            elif before:
                await trio.sleep(before)
            await self._send(h11.Data(data=b"data: " + json.dumps(chunk).encode() + b"\n\n"))
        if not complete:
            return
        await self._send(h11.Data(data=b"data: [DONE]\n\n"))
        await self._send(h11.EndOfMessage())


async def serve_fake_llm(
    llm: FakeLlm, port: int = 0, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """``await nursery.start(serve_fake_llm, llm)`` → the base URL."""
    await llm.serve(port, task_status=task_status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--answer", default="The answer.")
    parser.add_argument("--pieces", type=int, default=1, help="text deltas per answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each delta")
    parser.add_argument("--tool", default="", help="call this tool first (e.g. hybrid_search)")
    args = parser.parse_args(argv)
    text = Text(args.answer, pieces=args.pieces, delay=args.delay)

    def script(number: int, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]
        if args.tool and last.get("role") == "user" and body.get("tools"):
            return Calls([(args.tool, {"query": last.get("content") or "", "limit": 3})])
        return text

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(FakeLlm(script).serve, args.port)
            print(f"listening on {url}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
