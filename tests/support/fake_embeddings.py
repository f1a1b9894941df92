"""The one fake of an OpenAI-compatible embeddings API (a third-party service).

:class:`FakeEmbeddings` answers ``POST .../embeddings`` with deterministic vectors
and can behave like a real provider under load: latency, a concurrency limit and a
rolling-window rate limit (429, with or without ``Retry-After``), a fixed status,
texts it rejects (400), injected 500s and cut connections, a script for request
number ``n``, a ``fault`` named for request number ``n`` (:data:`FAULTS`), and a
``gate`` that holds every request until the test opens it. It
records what it saw (requests with their arrival times, statuses, batches, most
requests at once).

The same object is reached two ways: in process through :meth:`transport`
(``httpx.MockTransport``: the handler runs in the calling task, so ``trio.sleep``
is latency on the test's clock, autojump included) or over loopback HTTP/1.1 with
:func:`serve` (for a service in another process; ``GET /stats`` returns the
counters). ``python -m tests.support.fake_embeddings --port 0`` runs it alone (the
embedder benchmark does): it prints ``listening on 127.0.0.1:<port>`` once ready.

Two vector functions: :func:`hashed_vector` is a bag of words (texts sharing words
point the same way: enough for retrieval tests), :func:`text_vector` identifies its
text (a client can check that it got each text's own vector).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx
import trio

__all__ = ["CUT", "FAULTS", "FakeEmbeddings", "hashed_vector", "serve", "text_vector"]

_WORD = re.compile(r"[a-z0-9]+")

#: an answer that closes the connection without a response
CUT = object()
#: what ``FakeEmbeddings.fault(n)`` may name for request ``n``: wait ``stall`` seconds
#: first; close the connection unanswered; 429 with ``Retry-After: retry_after``; 500;
#: a 200 whose body is not JSON
FAULTS = ("stall", "cut", "429", "500", "garbage")
Answer = tuple[int, dict[str, str], Any]
Script = Callable[[int, httpx.Request], Awaitable[httpx.Response | None]]


def hashed_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic bag-of-words unit vector: texts sharing words point the same way."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def text_vector(text: str, dimensions: int) -> list[float]:
    """The vector of ``text`` itself, from its hash; no component is ever zero."""
    if dimensions > 16:  # one digest holds at most 16 numbers: chain blocks of 16
        blocks = [text_vector(f"{n}\x00{text}", 16) for n in range(0, dimensions, 16)]
        return [x for block in blocks for x in block][:dimensions]
    digest = hashlib.blake2b(text.encode(), digest_size=4 * dimensions).digest()
    values = struct.unpack(f">{dimensions}I", digest)
    return [(value % 2000 + 1) / 1000.0 - 1.0005 for value in values]


@dataclass
class FakeEmbeddings:
    """An embeddings API; see the module docstring. Every knob is off by default.

    ``script(n, request)`` answers request ``n`` (from 0) when it returns a response;
    raising from it is a transport error. ``on_request(count)`` is called as each
    request arrives, with the count so far (from 1).
    """

    dimensions: int = 16
    vector: Callable[[str, int], list[float]] = hashed_vector
    latency: float = 0.0
    gate: trio.Event | None = None
    concurrency_limit: int | None = None
    rate_limit: int | None = None
    rate_period: float = 60.0
    retry_after_on_rate: bool = True
    status: int | None = None
    reject: str | None = None
    p500: float = 0.0
    pcut: float = 0.0
    seed: int = 1
    script: Script | None = None
    fault: Callable[[int], str | None] | None = None
    stall: float = 10.0
    retry_after: float = 0.05
    on_request: Callable[[int], None] | None = None
    # what it saw
    requests: list[tuple[float, list[str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def texts(self) -> int:
        """Texts embedded (answered 200)."""
        return sum(len(batch) for batch in self.batches)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/embeddings"):
            return httpx.Response(404, json={"error": {"message": "not found"}})
        answer = await self.answer(request.content, request)
        if isinstance(answer, httpx.Response):
            return answer  # scripted
        if answer is CUT or not isinstance(answer, tuple):
            raise httpx.RemoteProtocolError("server closed the connection", request=request)
        status, headers, body = answer
        if isinstance(body, bytes):
            return httpx.Response(status, headers=headers, content=body)
        return httpx.Response(status, headers=headers, json=body)

    async def answer(self, content: bytes, request: httpx.Request | None = None) -> Answer | object:
        """The answer to one embeddings request: ``(status, headers, body)``, :data:`CUT`,
        or the response ``script`` gave."""
        body = json.loads(content)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        number = len(self.requests)
        self.requests.append((trio.current_time(), texts))
        if self.on_request is not None:
            self.on_request(len(self.requests))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.script is not None and request is not None:
                scripted = await self.script(number, request)
                if scripted is not None:
                    self.statuses.append(scripted.status_code)
                    return scripted
            fault = self.fault(number) if self.fault is not None else None
            answer = await self._answer(texts, body.get("model", "fake"), fault)
            return self._count(answer)
        finally:
            self.in_flight -= 1

    def _count(self, answer: Answer | object) -> Answer | object:
        status = answer[0] if isinstance(answer, tuple) else 0
        self.statuses.append(status)
        what = "cut" if answer is CUT else str(status)
        self.counts[what] = self.counts.get(what, 0) + 1
        return answer

    async def _answer(self, texts: list[str], model: str, fault: str | None) -> Answer | object:
        if fault == "stall":
            await trio.sleep(self.stall)
        elif fault == "cut":
            return CUT
        elif fault == "429":
            headers = {"Retry-After": f"{self.retry_after:g}"}
            return 429, headers, {"error": {"message": "injected rate limit"}}
        elif fault == "500":
            return 500, {}, {"error": {"message": "injected failure"}}
        elif fault == "garbage":
            return 200, {}, b"this is not json"
        if self.concurrency_limit is not None and self.in_flight > self.concurrency_limit:
            return 429, {}, {"error": {"message": "too many concurrent requests"}}
        if self.rate_limit is not None:
            now = trio.current_time()
            window = [t for t in self.accepted if t > now - self.rate_period]
            if len(window) >= self.rate_limit:
                wait = max(window[0] + self.rate_period - now, 0.001)
                headers = {"Retry-After": f"{wait:.3f}"} if self.retry_after_on_rate else {}
                return 429, headers, {"error": {"message": "rate limit exceeded"}}
            self.accepted.append(now)
        await trio.sleep(self.latency)
        if self.gate is not None:
            await self.gate.wait()
        if self.status is not None:
            return self.status, {}, {"error": {"message": "unavailable"}}
        if self.reject is not None and any(self.reject in t for t in texts):
            return 400, {}, {"error": {"message": "input rejected"}}
        roll = self._random.random() if self.pcut or self.p500 else 1.0
        if roll < self.pcut:
            return CUT
        if roll < self.pcut + self.p500:
            return 500, {}, {"error": {"message": "injected failure"}}
        self.batches.append(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": self.vector(t, self.dimensions)}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": sum(len(t) // 4 for t in texts), "total_tokens": 0}
        return 200, {}, {"object": "list", "data": data, "model": model, "usage": usage}

    def stats(self) -> dict[str, Any]:
        first = self.requests[0][0] if self.requests else 0.0
        times = [t - first for t, _ in self.requests]
        log = [(round(t, 4), s) for t, s in zip(times, self.statuses, strict=False)]
        return {"counts": self.counts, "max_in_flight": self.max_in_flight, "log": log}


# -- over loopback HTTP ---------------------------------------------------------------


async def serve(
    fake: FakeEmbeddings,
    port: int = 0,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``fake`` on 127.0.0.1; reports its base URL (``http://127.0.0.1:<port>/v1``)."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, lambda s: _connection(fake, s), listeners)
        task_status.started(f"http://127.0.0.1:{bound}/v1")


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


async def _send(conn: h11.Connection, stream: trio.SocketStream, answer: Answer) -> None:
    status, headers, obj = answer
    payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    head = [("content-type", "application/json"), ("content-length", str(len(payload)))]
    head += list(headers.items())
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=head)))
    await stream.send_all(conn.send(h11.Data(data=payload)))
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _connection(fake: FakeEmbeddings, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _next_event(conn, stream)
            if not isinstance(request, h11.Request):
                return
            body = b""
            while isinstance(event := await _next_event(conn, stream), h11.Data):
                body += event.data
            answer: Answer | object
            if request.target.endswith(b"/embeddings") and request.method == b"POST":
                answer = await fake.answer(body)
            elif request.target == b"/stats":
                answer = 200, {}, fake.stats()
            else:
                answer = 404, {}, {"error": {"message": "not found"}}
            if answer is CUT or not isinstance(answer, tuple):
                return  # close without answering
            await _send(conn, stream, answer)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        return
    finally:
        await stream.aclose()


async def _main(fake: FakeEmbeddings, port: int) -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve, fake, port)
        print(f"listening on {url.removeprefix('http://').removesuffix('/v1')}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible embeddings API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=int, default=60, help="requests per window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds")
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--pcut", type=float, default=0.0)
    parser.add_argument("--dims", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    fake = FakeEmbeddings(
        dimensions=args.dims,
        vector=text_vector,
        latency=args.latency,
        concurrency_limit=args.concurrency,
        rate_limit=args.rate,
        rate_period=args.window,
        p500=args.p500,
        pcut=args.pcut,
        seed=args.seed,
    )
    try:
        trio.run(_main, fake, args.port)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
