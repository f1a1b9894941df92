"""A fake OpenAI-compatible embedding server with real limits, for the embedder benchmark.

Serves ``POST /v1/embeddings`` over HTTP/1.1 (h11 on Trio) on 127.0.0.1 only:

* a concurrency limit: a request arriving while ``--concurrency`` are being served
  gets 429 at once (no Retry-After, as servers that shed load usually answer);
* a rolling-window rate limit: at most ``--rate`` requests accepted per ``--window``
  seconds; beyond it 429 with ``Retry-After`` = seconds until the window frees a
  place (decimal, millisecond resolution, since the window may be scaled down);
* faults, after the usual latency: ``--p500`` of accepted requests answer 500,
  ``--pcut`` have their connection closed without an answer.

Each vector is a deterministic function of its text (:func:`vector_for`), so a client
can check that every vector it got is the right one. ``GET /stats`` returns the
counters and a log of every request (arrival time, status).

Run: ``python bench/_fake_embedding_server.py --port 0 ...``; it prints
``listening on 127.0.0.1:<port>`` once ready and serves until terminated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

CUT = object()


def vector_for(text: str, dims: int) -> list[float]:
    """The vector of ``text``: derived from its hash, never zero."""
    if dims > 16:  # one digest holds at most 16 numbers: chain blocks of 16
        blocks = [vector_for(f"{n}\x00{text}", 16) for n in range(0, dims, 16)]
        return [x for block in blocks for x in block][:dims]
    digest = hashlib.blake2b(text.encode(), digest_size=4 * dims).digest()
    return [(value % 2000 + 1) / 1000.0 - 1.0005 for value in struct.unpack(f">{dims}I", digest)]


@dataclass
class Limits:
    concurrency: int
    rate: int
    window: float
    latency: float
    p500: float
    pcut: float
    dims: int
    seed: int


@dataclass
class State:
    limits: Limits
    started: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    max_in_flight: int = 0
    accepted: deque[float] = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=dict)
    log: list[tuple[float, int]] = field(default_factory=list)
    random: random.Random = field(default_factory=random.Random)

    def count(self, what: str, arrival: float, status: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        self.log.append((round(arrival - self.started, 4), status))

    async def embeddings(self, body: bytes) -> tuple[int, dict[str, str], Any] | object:
        limits = self.limits
        now = time.monotonic()
        if self.in_flight >= limits.concurrency:
            self.count("429_concurrency", now, 429)
            return 429, {}, {"error": {"message": "too many concurrent requests"}}
        while self.accepted and self.accepted[0] <= now - limits.window:
            self.accepted.popleft()
        if len(self.accepted) >= limits.rate:
            wait = self.accepted[0] + limits.window - now
            self.count("429_rate", now, 429)
            headers = {"Retry-After": f"{max(wait, 0.001):.3f}"}
            return 429, headers, {"error": {"message": "rate limit exceeded"}}
        self.accepted.append(now)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(limits.latency)
            roll = self.random.random()
            if roll < limits.pcut:
                self.count("cut", now, 0)
                return CUT
            if roll < limits.pcut + limits.p500:
                self.count("500", now, 500)
                return 500, {}, {"error": {"message": "injected failure"}}
            texts = json.loads(body)["input"]
            data = [
                {"object": "embedding", "index": i, "embedding": vector_for(t, limits.dims)}
                for i, t in enumerate(texts)
            ]
            self.count("200", now, 200)
            return 200, {}, {"object": "list", "data": data, "model": "fake"}
        finally:
            self.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        return {"counts": self.counts, "max_in_flight": self.max_in_flight, "log": self.log}


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


async def _send(
    conn: h11.Connection, stream: trio.SocketStream, status: int, headers: dict[str, str], obj: Any
) -> None:
    payload = json.dumps(obj).encode()
    head = [("content-type", "application/json"), ("content-length", str(len(payload)))]
    head += list(headers.items())
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=head)))
    await stream.send_all(conn.send(h11.Data(data=payload)))
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _connection(state: State, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _next_event(conn, stream)
            if not isinstance(request, h11.Request):
                return
            body = b""
            while isinstance(event := await _next_event(conn, stream), h11.Data):
                body += event.data
            if request.target.endswith(b"/embeddings") and request.method == b"POST":
                answer = await state.embeddings(body)
            elif request.target == b"/stats":
                answer = 200, {}, state.stats()
            else:
                answer = 404, {}, {"error": {"message": "not found"}}
            if answer is CUT or not isinstance(answer, tuple):
                return  # close without answering
            await _send(conn, stream, *answer)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        return
    finally:
        await stream.aclose()


async def serve(limits: Limits, port: int) -> None:
    state = State(limits, random=random.Random(limits.seed))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    bound = listeners[0].socket.getsockname()[1]
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    await trio.serve_listeners(lambda stream: _connection(state, stream), listeners)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    port = args.port
    limits = Limits(**{k: v for k, v in vars(args).items() if k != "port"})
    try:
        trio.run(serve, limits, port)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
