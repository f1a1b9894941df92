"""The chat routes under load: our own time per chat, held streams, disconnects.

    .venv/bin/python bench/chat.py [--chats 300] [--clients 16] [--streams 1000]
                                   [--disconnects 200] [--no-write]

One real server process (``bench/_chat_server.py``: ``python -m agent_trio serve``
with timing hooks on the graph gateway and the upstream clients, and a trivial
route) on the embedded engine, with instant fake upstreams: the fake LLM of
``tests/support/fake_llm.py`` (so its clock is this process's clock) and an OpenAI-compatible
embeddings endpoint (the bag-of-words vectors of ``tests/support/fake_embeddings.py``), both in this
process. The sample corpus is posted to ``POST /documents`` first. Limits are raised
for the whole run (CHAT_MAX_CONCURRENCY and LLM_MAX_CONCURRENCY 1024, the most
LLM_MAX_CONCURRENCY allows) so that phase 3 can hold its streams; the other phases
never come near the defaults.

1. **One client**: ``--chats`` ``POST /chat`` one after another (after a warm-up);
   the fake LLM answers a user's turn with one ``hybrid_search`` call and the tool
   result with text. Per chat: the latency the client sees, and the union of the
   server's upstream and graph call intervals inside it; *ours* is the difference.
   The same for ``GET /_bench/ping`` (a route that returns ``{"ok": true}``).
2. **Saturation**: ``--clients`` concurrent clients, chats/s and the server
   process's CPU time (user + system, /proc) per chat; the same for the trivial route.
3. **Held streams**: ``--streams`` ``POST /chat/stream`` opened (64 connecting at a
   time); the fake LLM holds every answer until all the streams are open (each has
   its ``session`` frame), then streams it for 5 s. RSS of the server process while
   all are held, minus its RSS before (after a warm-up), per stream. Before them,
   the frameworks' floor, the same way: as many streams held by
   ``bench/_floor_server.py`` (Quart-Trio on Hypercorn, nothing of ours; a fresh
   process each time), first a route that sends one frame and holds, then the same
   with one httpx stream open to the fake LLM.
4. **Disconnects**: ``--disconnects`` times, a stream is opened, read to its first
   ``text`` frame (the upstream answer is streaming, slowly), and closed; the time
   until the fake LLM sees its connection closed, on this process's clock. Then the
   server's limiters (``/health``) must be back at zero borrowed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import trio
from _report import write_section
from _server import free_port, machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_embeddings import hashed_vector  # noqa: E402
from tests.support.fake_llm import FakeLlm, Hold, Text, agentic_script  # noqa: E402

CORPUS = ROOT / "examples" / "corpus"
QUESTIONS = [
    "Who acquired Kestrel Labs?",
    "What is the QX7 telemetry gateway?",
    "Which fund led the Series A?",
    "Who is Priya Nandakumar?",
]
STREAM_SECONDS = 5.0
STREAM_PIECES = 10
OPENING_AT_ONCE = 64
#: every wait for the server is bounded by this
PATIENCE = 120.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def rss_samples(pid: int) -> list[int]:
    """RSS of ``pid``, five times over a second: what the held-stream phases take the
    largest of."""
    samples = []
    for _ in range(5):
        samples.append(rss_bytes(pid))
        await trio.sleep(0.2)
    return samples


def covered(intervals: Sequence[Sequence[Any]], start: float, end: float, kind: str = "") -> float:
    """Length of the union of ``intervals`` (of ``kind``, if given) clipped to [start, end]."""
    clipped = sorted(
        (max(a, start), min(b, end))
        for a, b, of in intervals
        if b > start and a < end and kind in ("", of)
    )
    total, reach = 0.0, start
    for a, b in clipped:
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


# -- processes -----------------------------------------------------------------


async def serve_embeddings(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """An instant OpenAI-compatible ``/v1/embeddings`` (bag-of-words vectors) on loopback."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, _embedding_connection, listeners)
        task_status.started(f"http://127.0.0.1:{port}/v1")


async def _embedding_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    body = b""
    with contextlib.suppress(trio.BrokenResourceError, h11.ProtocolError):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue or not (
                    data := await stream.receive_some(65536)
                ):
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                texts = json.loads(body)["input"]
                texts = texts if isinstance(texts, list) else [texts]
                data = [
                    {"object": "embedding", "index": i, "embedding": hashed_vector(text, 384)}
                    for i, text in enumerate(texts)
                ]
                payload = json.dumps({"object": "list", "data": data, "model": "fake"}).encode()
                headers = [
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload))),
                ]
                for part in (
                    h11.Response(status_code=200, headers=headers),
                    h11.Data(data=payload),
                    h11.EndOfMessage(),
                ):
                    await stream.send_all(conn.send(part) or b"")
                conn.start_next_cycle()
                body = b""
            elif isinstance(event, h11.ConnectionClosed):
                return


@dataclass
class Server:
    process: trio.Process
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


async def start_server(data: Path, llm_url: str, embed_url: str) -> Server:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEO4J_", "LLM_", "EMBEDDING_", "API_KEY", "INGEST_"))
    }
    env.update(
        AGENT_DATA_DIR=str(data / "data"),
        LLM_PROVIDER="openai",
        LLM_BASE_URL=llm_url,
        LLM_API_KEY="bench",
        LLM_CHOICE="fake-model",
        EMBEDDING_PROVIDER="openai",
        EMBEDDING_BASE_URL=embed_url,
        EMBEDDING_API_KEY="bench",
        EMBEDDING_MODEL="fake-embedding",
        EMBEDDING_DIMENSIONS="384",
        EMBEDDING_RATE_LIMIT_PER_MINUTE="0",
        EMBEDDING_MAX_CONCURRENCY="64",
        CHAT_MAX_CONCURRENCY="1024",
        LLM_MAX_CONCURRENCY="1024",
    )
    log_path = data / "server.log"
    with log_path.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                str(ROOT / "bench" / "_chat_server.py"),
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=data,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(process, f"http://127.0.0.1:{port}", log_path)


async def wait_healthy(http: httpx.AsyncClient, server: Server) -> dict[str, Any]:
    with trio.fail_after(PATIENCE):
        while True:
            if server.process.returncode is not None:
                raise SystemExit(f"the server exited; see {server.log_path}")
            try:
                response = await http.get(f"{server.url}/health")
            except httpx.TransportError:
                await trio.sleep(0.2)
                continue
            body: dict[str, Any] = response.json()
            if response.status_code == 200 and body["checks"]["graph"]["status"] == "ok":
                return body
            await trio.sleep(0.2)


async def ingest_corpus(http: httpx.AsyncClient, url: str) -> int:
    chunks = 0
    for path in sorted(CORPUS.iterdir()):
        body = {"title": path.stem, "source": path.name, "content": path.read_text()}
        response = await http.post(f"{url}/documents", json=body)
        response.raise_for_status()
        chunks += int(response.json()["chunk_count"])
    return chunks


async def wait_index_built(server: Server, deadline: float) -> str:
    """'built' once the engine logged a completed vector-index build, else 'pending'."""
    with trio.move_on_after(deadline):
        while "Built graph for index" not in server.log_path.read_text(errors="replace"):  # noqa: ASYNC110 - another process's log
            await trio.sleep(0.5)
        return "built"
    return "pending"


async def limiters(http: httpx.AsyncClient, url: str) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = (await http.get(f"{url}/health")).json()["limiters"]
    return result


async def limiters_at_zero(http: httpx.AsyncClient, url: str, within: float) -> float | None:
    """Seconds until every limiter has none borrowed and none waiting, or None."""
    began = trio.current_time()
    with trio.move_on_after(within):
        while True:
            stats = await limiters(http, url)
            if all(s["borrowed"] == 0 and s["waiting"] == 0 for s in stats.values()):
                return trio.current_time() - began
            await trio.sleep(0.005)
    return None


# -- phase 1 and 2 -----------------------------------------------------------------


@dataclass
class Latency:
    totals: list[float] = field(default_factory=list)
    outside: list[float] = field(default_factory=list)  # in upstream and graph calls
    graph: list[float] = field(default_factory=list)
    upstream: list[float] = field(default_factory=list)
    graph_calls: list[int] = field(default_factory=list)

    @property
    def ours(self) -> list[float]:
        return [t - o for t, o in zip(self.totals, self.outside, strict=True)]


async def post_chat(http: httpx.AsyncClient, url: str, number: int) -> None:
    body = {"message": QUESTIONS[number % len(QUESTIONS)]}
    response = await http.post(f"{url}/chat", json=body)
    if response.status_code != 200 or not response.json().get("message"):
        raise RuntimeError(f"/chat answered {response.status_code}: {response.text[:300]}")


async def get_ping(http: httpx.AsyncClient, url: str, number: int) -> None:
    response = await http.get(f"{url}/_bench/ping")
    if response.status_code != 200:
        raise RuntimeError(f"/_bench/ping answered {response.status_code}")


Request = Callable[[httpx.AsyncClient, str, int], Awaitable[None]]


async def one_client(http: httpx.AsyncClient, url: str, request: Request, n: int) -> Latency:
    result = Latency()
    await http.get(f"{url}/_bench/intervals")
    for number in range(n):
        began = time.perf_counter()
        await request(http, url, number)
        ended = time.perf_counter()
        intervals = (await http.get(f"{url}/_bench/intervals")).json()["intervals"]
        result.totals.append(ended - began)
        result.outside.append(covered(intervals, began, ended))
        result.graph.append(covered(intervals, began, ended, "graph"))
        result.upstream.append(covered(intervals, began, ended, "upstream"))
        result.graph_calls.append(sum(1 for a, b, kind in intervals if kind == "graph"))
    return result


@dataclass
class Saturation:
    done: int
    seconds: float
    cpu: float
    #: of ``cpu``, in the cyclic garbage collector
    collector: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.done

    @property
    def collector_ms(self) -> float:
        return 1000 * self.collector / self.done


async def saturate(server: Server, request: Request, clients: int, total: int) -> Saturation:
    numbers = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=PATIENCE, limits=limits) as http:

        async def client() -> None:
            for number in numbers:
                await request(http, server.url, number)

        collected = (await http.get(f"{server.url}/_bench/collector")).json()["seconds"]
        cpu = cpu_seconds(server.pid)
        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
        seconds = time.perf_counter() - began
        cpu = cpu_seconds(server.pid) - cpu
        collected = (await http.get(f"{server.url}/_bench/collector")).json()["seconds"] - collected
    return Saturation(total, seconds, cpu, collected)


# -- phase 3: held streams ------------------------------------------------------------


@dataclass
class Streams:
    wanted: int
    peak_open: int = 0
    ended: int = 0
    failed: int = 0
    rss_idle: int = 0
    rss_held: int = 0
    seconds_to_open: float = 0.0
    limiters_zero_after: float | None = None
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def per_stream_kb(self) -> float:
        return (self.rss_held - self.rss_idle) / max(1, self.peak_open) / 1024


async def read_stream(
    http: httpx.AsyncClient,
    url: str,
    question: str,
    on_frame: Callable[[dict[str, Any]], Awaitable[bool]],
) -> str:
    """Read one /chat/stream until ``on_frame`` returns False or the stream ends."""
    body = {"message": question}
    try:
        async with http.stream("POST", f"{url}/chat/stream", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return f"HTTP {response.status_code}: {response.text[:200]}"
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    frame = json.loads(line[5:])
                    if not await on_frame(frame):
                        if frame.get("type") == "error":
                            return f"error {frame.get('code')}: {frame.get('message')}"
                        return str(frame.get("type"))
    except httpx.TransportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "closed"


async def held_streams(server: Server, llm: FakeLlm, n: int) -> Streams:
    result = Streams(n)
    release = trio.Event()
    text = " ".join(f"word{i}" for i in range(STREAM_PIECES))
    all_open = trio.Event()
    opening = trio.CapacityLimiter(OPENING_AT_ONCE)
    open_now = 0
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=PATIENCE, limits=limits) as http:
        # warm-up: a few streams through every path, then the idle RSS
        llm.script = [Text(text, pieces=STREAM_PIECES)]
        for number in range(20):
            await read_stream(http, server.url, QUESTIONS[number % 4], _until_end)
        slow = Text(text, pieces=STREAM_PIECES, delay=STREAM_SECONDS / STREAM_PIECES)
        llm.script = [Hold(release, slow)]
        result.rss_idle = rss_bytes(server.pid)
        await http.get(f"{server.url}/_bench/memory")  # the baseline, when tracing

        async def one(number: int) -> None:
            nonlocal open_now
            counted = False
            await opening.acquire_on_behalf_of(number)
            try:

                async def on_frame(frame: dict[str, Any]) -> bool:
                    nonlocal open_now, counted
                    if frame["type"] == "session" and not counted:
                        counted = True
                        open_now += 1
                        result.peak_open = max(result.peak_open, open_now)
                        opening.release_on_behalf_of(number)
                        if open_now == n:
                            all_open.set()
                    return frame["type"] not in ("end", "error")

                outcome = await read_stream(http, server.url, QUESTIONS[number % 4], on_frame)
            finally:
                if counted:
                    open_now -= 1
                else:
                    opening.release_on_behalf_of(number)
            if outcome == "end":
                result.ended += 1
            else:
                result.failed += 1
                result.failures[outcome[:60]] = result.failures.get(outcome[:60], 0) + 1
                if result.failed <= 3:
                    after = time.perf_counter() - began
                    log(f"stream {number} ended after {after:.1f} s: {outcome}")

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for number in range(n):
                nursery.start_soon(one, number)
            with trio.move_on_after(PATIENCE):
                await all_open.wait()
            result.seconds_to_open = time.perf_counter() - began
            log(f"  {result.peak_open} streams open after {result.seconds_to_open:.1f} s")
            for line in (await http.get(f"{server.url}/_bench/memory")).json()["top"]:
                log(f"  memory: {line}")
            samples = await rss_samples(server.pid)
            release.set()
            await trio.sleep(STREAM_SECONDS / 2)
            samples.append(rss_bytes(server.pid))
            result.rss_held = max(samples)
        result.limiters_zero_after = await limiters_at_zero(http, server.url, 10)
    return result


async def _until_end(frame: dict[str, Any]) -> bool:
    return frame["type"] not in ("end", "error")


@dataclass
class Floor:
    """RSS per held stream of ``bench/_floor_server.py``: the frameworks alone."""

    upstream: bool
    wanted: int
    held: int = 0
    rss_idle: int = 0
    rss_held: int = 0

    @property
    def per_stream_kb(self) -> float:
        return (self.rss_held - self.rss_idle) / max(1, self.held) / 1024


async def floor_streams(llm: FakeLlm, llm_url: str, n: int, *, upstream: bool) -> Floor:
    """Hold ``n`` streams of a fresh floor server (with one upstream stream each, if
    ``upstream``): RSS before and while they are held, as for the chat streams."""
    result = Floor(upstream, n)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        str(ROOT / "bench" / "_floor_server.py"),
        "--bind",
        f"127.0.0.1:{port}",
    ]
    release = trio.Event()
    llm.script = [Hold(release)]  # the upstream answers are held until the end
    process = await trio.lowlevel.open_process(
        [*command, *(["--upstream", llm_url] if upstream else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    try:
        async with httpx.AsyncClient(timeout=PATIENCE, limits=limits) as http:
            with trio.fail_after(PATIENCE):
                while True:
                    if process.returncode is not None:
                        raise SystemExit("the floor server exited")
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/ping")).status_code == 200:
                            break
                    await trio.sleep(0.2)
            await _hold(http, url, 20, process.pid)  # warm-up: every path once
            result.rss_idle = rss_bytes(process.pid)
            result.held, result.rss_held = await _hold(http, url, n, process.pid)
    finally:
        release.set()
        process.terminate()
        with trio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
    return result


async def _hold(http: httpx.AsyncClient, url: str, n: int, pid: int) -> tuple[int, int]:
    """Open ``n`` streams of ``url``/hold, 64 connecting at a time; once all have their
    first frame, sample RSS as the chat phase does; close them. (held, largest RSS)."""
    opening = trio.CapacityLimiter(OPENING_AT_ONCE)
    all_open = trio.Event()
    held = 0

    async def one() -> None:
        nonlocal held
        await opening.acquire()
        response = await http.send(http.build_request("POST", f"{url}/hold"), stream=True)
        # kept: a line iterator that is collected closes the connection (httpcore's)
        lines = response.aiter_lines()
        try:
            async for line in lines:
                if line.startswith("data:"):
                    break
            opening.release()
            held += 1
            if held == n:
                all_open.set()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        with trio.fail_after(PATIENCE):
            await all_open.wait()
        samples = await rss_samples(pid)
        nursery.cancel_scope.cancel()
    return held, max(samples)


# -- phase 4: disconnects ---------------------------------------------------------------


@dataclass
class Disconnects:
    delays: list[float] = field(default_factory=list)
    not_seen: int = 0
    limiters_late: int = 0
    zero_after: list[float] = field(default_factory=list)


async def disconnects(server: Server, llm: FakeLlm, n: int) -> Disconnects:
    result = Disconnects()
    words = " ".join(f"w{i}" for i in range(400))
    llm.script = [Text(words, pieces=400, delay=0.05)]  # 20 s: always streaming when cut
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=PATIENCE, limits=limits) as http:
        for number in range(n):
            seen = len(llm.closed_while_answering)
            body = {"message": QUESTIONS[number % 4]}
            async with http.stream("POST", f"{server.url}/chat/stream", json=body) as response:
                assert response.status_code == 200, response.status_code
                async for line in response.aiter_lines():
                    if line.startswith("data:") and json.loads(line[5:])["type"] == "text":
                        break
                cut = trio.current_time()
            # leaving the block closed the response, and with it the connection
            with trio.move_on_after(5):
                await llm.wait_until(
                    lambda fake, seen=seen: len(fake.closed_while_answering) > seen
                )
            if len(llm.closed_while_answering) > seen:
                result.delays.append(llm.closed_while_answering[seen] - cut)
            else:
                result.not_seen += 1
            zero = await limiters_at_zero(http, server.url, 5)
            if zero is None:
                result.limiters_late += 1
            else:
                result.zero_after.append(zero)
    return result


# -- the run --------------------------------------------------------------------------------


@dataclass
class Results:
    clients: int
    index_state: str = ""
    chunks: int = 0
    chat: Latency = field(default_factory=Latency)
    ping: Latency = field(default_factory=Latency)
    chat_saturated: Saturation | None = None
    ping_saturated: Saturation | None = None
    streams: Streams | None = None
    floors: list[Floor] = field(default_factory=list)
    disconnects: Disconnects | None = None
    loads: dict[str, str] = field(default_factory=dict)
    final_limiters: dict[str, dict[str, float]] = field(default_factory=dict)


async def run(args: argparse.Namespace) -> Results:
    results = Results(args.clients)
    llm = FakeLlm(agentic_script())
    with tempfile.TemporaryDirectory(prefix="agent-trio-chat-bench-") as tmp:
        async with trio.open_nursery() as nursery:
            llm_url = await nursery.start(llm.serve)
            embed_url = await nursery.start(serve_embeddings)
            server = await start_server(Path(tmp), llm_url, embed_url)
            try:
                await measure(server, llm, llm_url, args, results)
            finally:
                if args.keep_log:
                    shutil.copy(server.log_path, args.keep_log)
                server.process.terminate()
                with trio.move_on_after(30):
                    await server.process.wait()
                if server.process.returncode is None:
                    server.process.kill()
                nursery.cancel_scope.cancel()
    return results


async def measure(
    server: Server, llm: FakeLlm, llm_url: str, args: argparse.Namespace, results: Results
) -> None:
    async with httpx.AsyncClient(timeout=PATIENCE) as http:
        log(f"starting the server on {server.url}")
        await wait_healthy(http, server)
        log("posting the sample corpus")
        results.chunks = await ingest_corpus(http, server.url)
        results.index_state = await wait_index_built(server, 60)
        log(f"vector index: {results.index_state}; warming up")
        for number in range(30):
            await post_chat(http, server.url, number)
            await get_ping(http, server.url, number)

        results.loads["one client"] = load_average()
        log(f"1. one client, {args.chats} chats and pings (load {results.loads['one client']})")
        results.chat = await one_client(http, server.url, post_chat, args.chats)
        results.ping = await one_client(http, server.url, get_ping, args.chats)

    results.loads["saturation"] = load_average()
    log(f"2. saturation, {args.clients} clients (load {results.loads['saturation']})")
    results.chat_saturated = await saturate(server, post_chat, args.clients, args.chats * 2)
    results.ping_saturated = await saturate(server, get_ping, args.clients, args.chats * 10)

    results.loads["streams"] = load_average()
    log(f"3. {args.streams} held streams (load {results.loads['streams']})")
    for upstream in (False, True):
        floor = await floor_streams(llm, llm_url, args.streams, upstream=upstream)
        results.floors.append(floor)
        log(f"  floor{' with upstream' if upstream else ''}: {floor.per_stream_kb:.1f} KB a stream")
    results.streams = await held_streams(server, llm, args.streams)

    results.loads["disconnects"] = load_average()
    log(f"4. {args.disconnects} disconnects (load {results.loads['disconnects']})")
    results.disconnects = await disconnects(server, llm, args.disconnects)
    async with httpx.AsyncClient(timeout=PATIENCE) as http:
        results.final_limiters = await limiters(http, server.url)


# -- the report -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def section(r: Results, command: str) -> str:
    chat, ping = r.chat, r.ping
    cs, ps = r.chat_saturated, r.ping_saturated
    st, dc = r.streams, r.disconnects
    assert cs is not None
    assert ps is not None
    assert st is not None
    assert dc is not None
    ours_p50 = percentile(chat.ours, 0.5)
    cut_p50, cut_p99 = percentile(dc.delays, 0.5), percentile(dc.delays, 0.99)
    cuts = len(dc.delays) + dc.not_seen
    zeroed = len(dc.zero_after)
    zero_p99 = ms(percentile(dc.zero_after, 0.99)) if dc.zero_after else "-"
    cut_ok = cut_p99 <= 0.050 and dc.limiters_late == 0 and dc.not_seen == 0
    streams_ok = st.peak_open >= 1000 and st.per_stream_kb <= 30
    floors = ", ".join(f"{f.per_stream_kb:.1f} KB {_FLOOR_SHORT[f.upstream]}" for f in r.floors)
    loads = "; ".join(f"{phase} {load}" for phase, load in r.loads.items())
    intro = f"""The real server (`bench/_chat_server.py`: `python -m agent_trio serve` with
    hypercorn.toml, plus timing hooks and a trivial route) on the embedded engine, with
    instant fake upstreams in the bench's process (the fake LLM of
    `tests/support/fake_llm.py`, and an embeddings endpoint giving the bag-of-words
    vectors of `tests/support/fake_embeddings.py`). The sample corpus ({r.chunks} chunks)
    is posted first; the engine's vector index was
    **{r.index_state}** (the engine logged a completed build) before anything was
    measured. Each chat: the model asks for
    one `hybrid_search`, the tool runs (query embedding, graph search), the model answers;
    the session and both messages are written to the graph. {machine(shared=True)},
    {time.strftime("%Y-%m-%d %H:%M")}, load average (1, 5, 15 min) per phase: {loads}."""
    outside = """*In upstream and graph calls*: the union of the intervals the server spent in
    `GraphGateway._call` (driver, trio-asyncio, the engine), `Upstream.post_json`
    (embedding), and opening and reading the LLM streams (`Upstream.stream_json`, each
    next event), within the chat's time. *Ours* therefore still holds the client's own
    httpx time, the loopback, Hypercorn and Quart, as the floor row shows."""
    cpu = """*CPU per request*: user + system time of the server process (/proc), which is
    all of ours: the engine (a JVM child) and the fakes run in other processes. The
    machine's two cores also run the engine, the fakes and the load generator, so
    requests per second are the whole machine's; CPU per request is the server's own.
    *In the garbage collector*: the part of it spent in the cyclic collector's passes
    (`gc.callbacks`, the serving thread's CPU time)."""
    held = f"""*Held streams*: {st.wanted} `POST /chat/stream` opened, {OPENING_AT_ONCE}
    connecting at a time; the fake LLM holds each answer until every stream has its
    `session` frame, then streams it for {STREAM_SECONDS:.0f} s. RSS is sampled while
    all are held and once while they stream; the largest sample counts. *The floor*:
    the same count of streams held, the same way, by `bench/_floor_server.py`, a
    Quart-Trio app on Hypercorn's Trio worker with nothing of ours (a fresh process
    for each row, run just before the chat streams): a route that sends one frame and
    holds; then the same with one httpx stream open to the fake LLM, which holds its
    answer. A held chat stream keeps at least that much open."""
    lines = [
        "## Chat: our own time, held streams, disconnects",
        "",
        f"Command: `{command}`",
        "",
        _fill(intro),
        "",
        "| one client, sequential | p50 | p99 | mean |",
        "|---|---:|---:|---:|",
        _row("`POST /chat`, as the client sees it", chat.totals),
        _row("... in upstream and graph calls", chat.outside),
        _row(f"... of which graph ({_mean(chat.graph_calls):.1f} calls per chat)", chat.graph),
        _row("... of which upstream (LLM twice, embedding once)", chat.upstream),
        _row("... **ours** (the difference)", chat.ours),
        _row("`GET /_bench/ping` (framework floor)", ping.totals),
        "",
        _fill(outside),
        "",
        f"| at saturation ({r.clients} clients) | requests | per second | CPU per request |"
        " ... in the garbage collector |",
        "|---|---:|---:|---:|---:|",
        f"| `POST /chat` | {cs.done} | {cs.rate:.0f} | {cs.cpu_ms:.1f} ms |"
        f" {cs.collector_ms:.2f} ms |",
        f"| `GET /_bench/ping` | {ps.done} | {ps.rate:.0f} | {ps.cpu_ms:.2f} ms |"
        f" {ps.collector_ms:.2f} ms |",
        "",
        _fill(cpu),
        "",
        "| held streams | |",
        "|---|---:|",
        f"| streams wanted / held at once | {st.wanted} / {st.peak_open} |",
        f"| seconds to open them all | {st.seconds_to_open:.1f} s |",
        f"| server RSS idle / held | {st.rss_idle / 2**20:.0f} MB / {st.rss_held / 2**20:.0f} MB |",
        f"| **RSS per open stream** | {st.per_stream_kb:.1f} KB |",
        *(
            f"| ... floor: {_FLOOR_ROWS[f.upstream]} ({f.held} held) | {f.per_stream_kb:.1f} KB |"
            for f in r.floors
        ),
        f"| streams ended with `end` / otherwise | {st.ended} / {st.failed} |",
        *(f"| ... {why} | {count} |" for why, count in st.failures.items()),
        f"| limiters at zero after | {_zero(st.limiters_zero_after)} |",
        "",
        _fill(held),
        "",
        "| disconnect: upstream connection closed | |",
        "|---|---:|",
        f"| disconnects / closes seen by the fake LLM | {cuts} / {len(dc.delays)} |",
        f"| p50 / p99 / max | {ms(cut_p50)} / {ms(cut_p99)} / {ms(max(dc.delays))} |",
        f"| limiters back at zero within 5 s | {zeroed} of {cuts}, p99 {zero_p99} |",
        f"| limiters at the end (borrowed/total) | {_limiters(r.final_limiters)} |",
        "",
        "Goals:",
        "",
        f"- disconnect to upstream closed ≤ 50 ms p99, limiters zero afterwards: {ms(cut_p99)},"
        f" {zeroed} of {cuts} at zero - {verdict(cut_ok)}",
        f"- our own time per /chat ≤ 5 ms p50 at one client: {ms(ours_p50)}"
        f" - {verdict(ours_p50 <= 0.005)}",
        f"- ≤ 10 ms CPU per chat at saturation: {cs.cpu_ms:.1f} ms - {verdict(cs.cpu_ms <= 10)}",
        f"- 1000 concurrent streams at ≤ 30 KB RSS each: {st.peak_open} held,"
        f" {st.per_stream_kb:.1f} KB - {verdict(streams_ok)}"
        + (f" (the frameworks' floor in the same run: {floors})" if floors else ""),
    ]
    return "\n".join(lines) + "\n"


_FLOOR_ROWS = {
    False: "Quart-Trio on Hypercorn holding a stream",
    True: "the same, with one httpx stream upstream",
}
_FLOOR_SHORT = {False: "for a held stream", True: "with one upstream stream"}


def _fill(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=90)


def _row(label: str, samples: Sequence[float]) -> str:
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    return f"| {label} | {ms(p50)} | {ms(p99)} | {ms(sum(samples) / len(samples))} |"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _zero(seconds: float | None) -> str:
    return "not within 10 s" if seconds is None else f"{ms(seconds)}"


def _limiters(stats: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{name} {int(s['borrowed'])}/{s['total']:g}" for name, s in stats.items())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--disconnects", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here")
    args = parser.parse_args(argv)
    results = trio.run(run, args)
    command = ".venv/bin/python bench/chat.py" + "".join(
        f" --{name} {value}"
        for name, value, default in [
            ("chats", args.chats, 300),
            ("clients", args.clients, 16),
            ("streams", args.streams, 1000),
            ("disconnects", args.disconnects, 200),
        ]
        if value != default
    )
    text = section(results, command)
    print(text)
    if not args.no_write:
        write_section("chat", text)
        log("wrote its section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
