"""``python -m agent_trio chat``, used as a person would: in a pseudo-terminal, typing.

The client runs as a real process on a pty (its controlling terminal, so Ctrl-C is
the terminal's SIGINT). Its server is a small loopback HTTP server that speaks the
contract's ``/chat/stream`` frames, scripted per test, which also sees each request
and when the client closed its connection. Every wait is a bounded wait for text
on the terminal or for an event, never a sleep.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import struct
import sys
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio

from agent_trio import __version__
from agent_trio.client import api_key_from_env, iter_frames
from tests.support.chat import poll
from tests.support.server import running_server, wait_healthy

pytestmark = pytest.mark.slow

#: generous bound on any one wait: a loaded machine is slow, never this slow
WAIT = 30.0
CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"

# -- the terminal ------------------------------------------------------------


class Terminal:
    """The master side of a pty running the client: type into it, read what it shows."""

    def __init__(self, master: int, process: trio.Process, patience: float) -> None:
        self._patience = patience
        self._stream = trio.lowlevel.FdStream(master)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._raw = ""
        self._seen = 0
        self.process = process

    @property
    def output(self) -> str:
        return self._raw.replace("\r\n", "\n")

    async def expect(self, text: str) -> str:
        """Wait until ``text`` appears after what was expected last; the output up to it."""
        start = self._seen
        open_ = True
        with trio.move_on_after(self._patience):
            while open_ and (found := self.output.find(text, start)) < 0:
                open_ = await self._read()
        found = self.output.find(text, start)
        assert found >= 0, f"{text!r} not shown; the terminal shows:\n{self.output}"
        self._seen = found + len(text)
        return self.output[start : self._seen]

    async def type(self, keys: str) -> None:
        await self._stream.send_all(keys.encode())

    async def reading_keys(self) -> None:
        """Wait until the client sleeps in its read of the terminal, after a prompt.

        Ctrl-C is a signal. One that arrives after readline wrote its prompt but before
        it blocks in select() only trips Python's flag, and is acted on at the next key:
        a window of a few instructions that a person never hits, but a test typing the
        moment the prompt shows can, on a loaded machine.
        """
        stat = Path(f"/proc/{self.process.pid}/stat")
        await poll(
            lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "S", within=self._patience
        )

    async def exit_code(self) -> int:
        with trio.fail_after(self._patience):
            while await self._read():  # drain, so the child is never blocked on a full pty
                pass
            return await self.process.wait()

    async def _read(self) -> bool:
        try:
            data = await self._stream.receive_some(4096)
        except trio.BrokenResourceError:  # EIO: the child closed its side
            return False
        self._raw += self._decoder.decode(data)
        return bool(data)

    async def aclose(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._stream.aclose()


@asynccontextmanager
async def chat_client(url: str, *, patience: float = WAIT, **env: str) -> AsyncIterator[Terminal]:
    """``python -m agent_trio chat --url URL`` on a fresh pty of 40 x 200.

    ``patience`` bounds each wait for the terminal to show something.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("AGENT_TRIO_API_KEY", "API_KEY")}
    environ.update(TERM="xterm", **env)
    try:
        process = await trio.lowlevel.open_process(
            # util-linux setsid: a new session whose controlling terminal is the pty
            # on stdin (no Python runs between fork and exec), so Ctrl-C reaches it
            ["setsid", "--ctty", sys.executable, "-m", "agent_trio", "chat", "--url", url],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
        )
    finally:
        os.close(slave)
    terminal = Terminal(master, process, patience)
    try:
        yield terminal
    finally:
        await terminal.aclose()


# -- a loopback server speaking the contract's frames -------------------------


@dataclass
class Exchange:
    """One request to the fake server and the means to answer it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    _stream: trio.SocketStream
    _conn: h11.Connection
    closed_by_client: trio.Event = field(default_factory=trio.Event)

    async def respond(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        # one request per connection, and the client is told so: it never sends the
        # next request on a connection this server is closing
        fields = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "connection": "close",
        }
        all_headers = {**fields, **(headers or {})}
        await self._send(h11.Response(status_code=status, headers=list(all_headers.items())))
        await self._send(h11.Data(data=data))
        await self._send(h11.EndOfMessage())

    async def start_stream(self) -> None:
        headers = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "connection": "close",
        }
        await self._send(h11.Response(status_code=200, headers=list(headers.items())))

    async def frame(self, kind: str, *, event_line: bool = True, **data: Any) -> None:
        payload = json.dumps({"type": kind, **data})
        text = (f"event: {kind}\n" if event_line else "") + f"data: {payload}\n\n"
        await self._send(h11.Data(data=text.encode()))

    async def ping(self) -> None:
        await self._send(h11.Data(data=b": ping\n\n"))

    async def end_stream(self) -> None:
        await self._send(h11.EndOfMessage())

    async def wait_for_client_to_close(self) -> None:
        """Read until the client's side of the connection is gone."""
        try:
            while await self._stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
        self.closed_by_client.set()

    async def _send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            await self._stream.send_all(data)


Handler = Callable[[Exchange], Awaitable[None]]


@dataclass
class FakeServer:
    """Answers GET /health itself and each POST /chat/stream with the next handler."""

    url: str = ""
    handlers: list[Handler] = field(default_factory=list)
    chats: list[Exchange] = field(default_factory=list)
    api_key: str | None = None
    _listening: trio.CancelScope = field(default_factory=trio.CancelScope)
    _stopped: trio.Event = field(default_factory=trio.Event)

    async def listen(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        with self._listening:
            await trio.serve_tcp(self.serve, 0, host="127.0.0.1", task_status=task_status)
        self._stopped.set()

    async def stop(self) -> None:
        """Close the listening socket (and every connection): the server is down."""
        self._listening.cancel()
        await self._stopped.wait()

    async def serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        exchange = Exchange(
            request.method.decode(),
            request.target.decode(),
            headers,
            json.loads(body) if body else None,
            stream,
            conn,
        )
        await self._answer(exchange)
        await stream.aclose()

    async def _answer(self, exchange: Exchange) -> None:
        if exchange.path == "/health":
            await exchange.respond(200, {"status": "healthy", "version": "9.9.9"})
            return
        if self.api_key and exchange.headers.get("authorization") != f"Bearer {self.api_key}":
            error = {"code": "unauthorized", "message": "a valid API key is required"}
            await exchange.respond(401, {"error": error})
            return
        assert (exchange.method, exchange.path) == ("POST", "/chat/stream")
        self.chats.append(exchange)
        await self.handlers.pop(0)(exchange)


@asynccontextmanager
async def fake_server() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(server.listen)
        port = listeners[0].socket.getsockname()[1]
        server.url = f"http://127.0.0.1:{port}"
        yield server
        nursery.cancel_scope.cancel()


def answer(*frames: tuple[str, dict[str, Any]], session: str = "s-1") -> Handler:
    """A handler that streams ``session``, ``model``, then ``frames``, then ``end``."""

    async def handle(exchange: Exchange) -> None:
        await exchange.start_stream()
        await exchange.frame("session", session_id=session)
        await exchange.frame("model", model_used="fake-model")
        for kind, data in frames:
            await exchange.frame(kind, **data)
        await exchange.frame("end", session_id=session, message_id="m-1")
        await exchange.end_stream()

    return handle


SOURCES = [
    {
        "document_id": "d-1",
        "document_title": "Acquisitions 2024",
        "document_source": "acquisitions.md",
        "chunk_id": "d-1:0",
        "score": 0.8123,
    },
    {
        "document_id": "d-1",
        "document_title": "Acquisitions 2024",
        "document_source": "acquisitions.md",
        "chunk_id": "d-1:3",
        "score": 0.5,
    },
    {
        "document_id": "d-2",
        "document_title": "Telemetry startups",
        "document_source": "telemetry.md",
        "chunk_id": "d-2:1",
        "score": 0.64,
    },
]
TOOL = {
    "tool_name": "hybrid_search",
    "args": {"query": "acquired", "limit": 5},
    "tool_call_id": "c1",
}


# -- the tests -----------------------------------------------------------------


async def test_a_conversation_streams_the_answer_keeps_the_session_and_lists_sources() -> None:
    first_part_seen = trio.Event()

    async def streamed(exchange: Exchange) -> None:
        await exchange.start_stream()
        await exchange.frame("session", session_id="s-42")
        await exchange.frame("model", model_used="fake-model")
        await exchange.frame("tool_call", **TOOL)
        await exchange.frame("text", content="Northwind acquired ")
        await first_part_seen.wait()  # the rest only once the first part is on screen
        await exchange.ping()
        await exchange.frame("text", content="Skylark Telemetry in 2024.")
        await exchange.frame("sources", sources=SOURCES)
        await exchange.frame("tools", tools=[TOOL])
        await exchange.frame("end", session_id="s-42", message_id="m-1")
        await exchange.end_stream()

    async with fake_server() as server, chat_client(server.url) as term:
        server.handlers += [streamed, answer(("text", {"content": "In March."}), session="s-42")]
        await term.expect("agent-trio 9.9.9 at " + server.url)
        await term.expect("you> ")
        await term.type("who bought the telemetry startup?\r")
        await term.expect('-> hybrid_search(query="acquired", limit=5)')
        shown = await term.expect("Northwind acquired ")
        assert "Skylark" not in shown
        first_part_seen.set()
        await term.expect("Skylark Telemetry in 2024.\n")
        listing = await term.expect("you> ")
        assert listing.startswith("sources:\n")
        assert "1. Acquisitions 2024 (acquisitions.md)  score 0.81\n" in listing
        assert "2. Telemetry startups (telemetry.md)  score 0.64\n" in listing
        assert "score 0.50" not in listing  # one line per document, its best chunk
        assert term.output.count("-> hybrid_search") == 1  # `tools` repeats the call

        await term.type("when?\r")
        await term.expect("In March.")
        await term.expect("you> ")
        await term.type("\x04")
        assert await term.exit_code() == 0

    first, second = (chat.body for chat in server.chats)
    assert first == {"message": "who bought the telemetry startup?", "session_id": None}
    assert second == {"message": "when?", "session_id": "s-42"}


async def test_ctrl_c_cancels_the_answer_and_closes_the_request_not_the_program() -> None:
    held: list[Exchange] = []

    async def endless(exchange: Exchange) -> None:
        held.append(exchange)
        await exchange.start_stream()
        await exchange.frame("session", session_id="s-7")
        await exchange.frame("text", content="The first half of a long answer")
        await exchange.wait_for_client_to_close()

    async with fake_server() as server, chat_client(server.url) as term:
        server.handlers += [endless, answer(("text", {"content": "Short answer."}), session="s-7")]
        await term.expect("you> ")
        await term.type("tell me everything\r")
        await term.expect("The first half of a long answer")
        await term.type("\x03")
        await term.expect("[answer cancelled]\n")
        with trio.fail_after(WAIT):
            await held[0].closed_by_client.wait()
        await term.expect("you> ")
        assert term.process.returncode is None

        await term.reading_keys()
        await term.type("\x03")  # at the prompt: a reminder, not an exit
        await term.expect("(Ctrl-D quits)")
        await term.expect("you> ")

        await term.type("and briefly?\r")
        await term.expect("Short answer.")
        await term.expect("you> ")
        await term.type("\x04")
        assert await term.exit_code() == 0
    assert server.chats[1].body["session_id"] == "s-7"


async def test_a_server_that_is_down_is_one_clear_line_and_exit_1() -> None:
    async with fake_server() as server:
        url = server.url  # a port that was just listening and is closed now
    async with chat_client(url) as term:
        line = await term.expect("\n")
        assert line.startswith(f"error: cannot reach agent-trio at {url}")
        assert "Is the server running? Start it with `python -m agent_trio serve`" in line
        assert await term.exit_code() == 1
        assert "Traceback" not in term.output


async def test_a_server_gone_mid_conversation_is_a_clear_line_and_the_prompt_again() -> None:
    async with fake_server() as server, chat_client(server.url) as term:
        server.handlers.append(answer(("text", {"content": "Still here."})))
        await term.expect("you> ")
        await term.type("are you there?\r")
        await term.expect("Still here.")
        await term.expect("you> ")
        await server.stop()
        await term.type("and now?\r")
        await term.expect(f"error: cannot reach agent-trio at {server.url}")
        await term.expect("you> ")
        await term.type("\x04")
        assert await term.exit_code() == 0


async def test_the_api_key_comes_from_the_environment_and_a_401_says_which() -> None:
    async with fake_server() as server:
        server.api_key = "s3cret"
        server.handlers.append(answer(("text", {"content": "Authorized answer."})))
        async with chat_client(server.url) as term:
            await term.expect("you> ")
            await term.type("hello\r")
            await term.expect("error: the server needs an API key: set AGENT_TRIO_API_KEY")
            await term.expect("you> ")
            await term.type("\x04")
            assert await term.exit_code() == 0
        async with chat_client(server.url, AGENT_TRIO_API_KEY="wrong") as term:
            await term.expect("you> ")
            await term.type("hello\r")
            await term.expect("error: the server refused the API key")
            await term.expect("you> ")
            await term.type("\x04")
            assert await term.exit_code() == 0
        async with chat_client(server.url, API_KEY="s3cret") as term:
            await term.expect("you> ")
            await term.type("hello\r")
            await term.expect("Authorized answer.")
            await term.expect("you> ")
            await term.type("\x04")
            assert await term.exit_code() == 0


async def test_error_frames_refusals_and_cut_streams_are_shown_as_errors() -> None:
    async def fails(exchange: Exchange) -> None:
        await exchange.start_stream()
        await exchange.frame("session", session_id="s-1")
        await exchange.frame("text", content="Partial")
        message = "the language model is unavailable"
        await exchange.frame("error", code="upstream_unavailable", message=message, content=message)
        await exchange.end_stream()

    async def busy(exchange: Exchange) -> None:
        error = {"code": "overloaded", "message": "too many chats at once", "field": None}
        await exchange.respond(503, {"error": error}, {"retry-after": "2"})

    async def cut(exchange: Exchange) -> None:
        await exchange.start_stream()
        await exchange.frame("session", session_id="s-1")
        await exchange.frame("text", content="Cut short")
        await exchange.end_stream()  # no `end` frame

    async with fake_server() as server, chat_client(server.url) as term:
        server.handlers += [fails, busy, cut]
        await term.expect("you> ")
        await term.type("one\r")
        await term.expect(
            "Partial\nerror: the language model is unavailable (upstream_unavailable)\n"
        )
        await term.expect("you> ")
        await term.type("two\r")
        await term.expect(
            "error: too many chats at once (overloaded, HTTP 503); try again in 2 s\n"
        )
        await term.expect("you> ")
        await term.type("three\r")
        await term.expect("Cut short\nerror: the server closed the stream before the answer ended")
        await term.expect("you> ")
        await term.type("\x04")
        assert await term.exit_code() == 0
        assert "Traceback" not in term.output


async def test_a_stream_of_data_lines_alone_reads_the_same() -> None:
    async def data_only(exchange: Exchange) -> None:
        await exchange.start_stream()
        for kind, data in [
            ("session", {"session_id": "s-9"}),
            ("text", {"content": "Data lines only."}),
            ("sources", {"sources": SOURCES[2:]}),
            ("end", {"session_id": "s-9", "message_id": "m"}),
        ]:
            await exchange.frame(kind, event_line=False, **data)
        await exchange.end_stream()

    async with fake_server() as server, chat_client(server.url) as term:
        server.handlers += [data_only, answer(session="s-9")]
        await term.expect("you> ")
        await term.type("q\r")
        await term.expect("Data lines only.\nsources:\n  1. Telemetry startups (telemetry.md)")
        await term.expect("you> ")
        await term.type("again\r")
        await term.expect("you> ")
        await term.type("\x04")
        assert await term.exit_code() == 0
    assert server.chats[1].body["session_id"] == "s-9"


# -- units ------------------------------------------------------------------------


def test_frames_take_their_type_from_the_data_or_else_the_event_line() -> None:
    lines = [
        ": ping",
        "",
        "event: text",
        'data: {"content": "a"}',
        "",
        'data: {"type": "end", "session_id": "s"}',
        "",
        "event: text",
        "data: not json",
        "",
        "event: sources",
        'data: {"sources":',
        "data:  []}",
    ]
    assert list(iter_frames(lines)) == [
        {"type": "text", "content": "a"},
        {"type": "end", "session_id": "s"},
        {"type": "sources", "sources": []},
    ]


def test_the_api_key_variable_of_the_client_comes_first() -> None:
    assert api_key_from_env({"AGENT_TRIO_API_KEY": "a", "API_KEY": "b"}) == "a"
    assert api_key_from_env({"AGENT_TRIO_API_KEY": "", "API_KEY": "b"}) == "b"
    assert api_key_from_env({}) is None


# -- against the real service ----------------------------------------------------------


@pytest.mark.engine
async def test_a_conversation_with_the_real_service_on_the_sample_corpus(tmp_path: Path) -> None:
    # No configuration at all: the embedded engine, the local embedder, no LLM.
    async with running_server(tmp_path) as (process, url, _data_dir):
        await wait_healthy(url, process)
        async with httpx.AsyncClient(timeout=120) as http:
            for path in sorted(CORPUS.iterdir()):
                body = {"title": path.stem, "source": path.name, "content": path.read_text()}
                response = await http.post(f"{url}/documents", json=body)
                assert response.status_code == 201, response.text
        # the local model embeds each question on a CPU shared with the engine
        async with chat_client(url, patience=120) as term:
            await term.expect(f"agent-trio {__version__} at {url} (healthy)")
            await term.expect("you> ")
            await term.type("Who acquired Kestrel Labs?\r")
            await term.expect("-> hybrid_search(")
            await term.expect("Corvid Systems acquired Kestrel Labs")
            answer = await term.expect("you> ")
            assert "\nsources:\n  1. " in answer, answer
            assert "corvid-acquires-kestrel.md" in answer.split("sources:")[1]
            await term.type("And when was Kestrel Labs founded?\r")
            await term.expect("sources:")
            await term.expect("you> ")
            await term.type("\x04")
            assert await term.exit_code() == 0
            assert "error" not in term.output
