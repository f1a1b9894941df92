"""SIGTERM with many chat streams open: every stream told, the server and engine gone in time.

    .venv/bin/python bench/shutdown.py [--streams 100] [--runs 3] [--write]

Each run starts the real server (``hypercorn --config hypercorn.toml
agent_trio.app:app``) on the embedded engine, on a fresh data directory; its LLM and
embeddings API are the fakes of ``tests/support/``, in this process on loopback.
``--streams`` ``POST /chat/stream`` are opened at once; the fake LLM sends each
answer's first words and then holds the rest. Once every stream has its first
``text`` frame and the fake has every request in flight (counts, not a wait),
SIGTERM goes to the server. Measured on this process's clock from the signal: when
each stream's ``error`` frame with code ``shutting_down`` arrives (the last one
counts), when the process exits, and when no engine process (a JVM whose command
line names the data directory) is left. A second server on the same data directory
then reads every session back: each answer must be stored ``interrupted``.

The issue's bar: all streams told, exit status 0 within ``graceful_timeout`` (from
hypercorn.toml) + 2 s, engine gone. The chat and LLM limits are raised for the run
(CHAT_MAX_CONCURRENCY, LLM_MAX_CONCURRENCY) so that every stream is mid-answer at the
upstream, none queued before it (the LLM client's connection pool is as wide as
LLM_MAX_CONCURRENCY). If fewer streams than asked reach the upstream, the bench stops
and says how many were held.
Exits 1 when a check is missed; ``--write`` puts the figures in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import textwrap
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
from _report import write_section
from _server import ROOT, free_port, machine, server_command, server_env

sys.path.insert(0, str(ROOT))

from tests.support.fake_embeddings import FakeEmbeddings, serve
from tests.support.fake_llm import FakeLlm, Text
from tests.support.server import fakes_env as fake_apis_env
from tests.support.service import engine_pids, until_no_engine

GRACEFUL_TIMEOUT = float(tomllib.loads((ROOT / "hypercorn.toml").read_text())["graceful_timeout"])
#: the issue's bound, from SIGTERM: every stream told, the process gone
BOUND = GRACEFUL_TIMEOUT + 2.0
#: every wait for the server is bounded by this (against a hang)
PATIENCE = 180.0
FIRST, REST = "Held words. ", "The rest."


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Run:
    """One run's figures: seconds from SIGTERM (None: did not happen)."""

    streams: int
    told: list[float] = field(default_factory=list)  # each stream's shutting_down frame
    other_ends: list[str] = field(default_factory=list)  # streams that ended otherwise
    exited: float | None = None
    exit_code: int | None = None
    engines_at_exit: int = 0
    engine_gone: float | None = None
    interrupted: int = 0
    loads: dict[str, str] = field(default_factory=dict)

    @property
    def last_told(self) -> float | None:
        return max(self.told) if len(self.told) == self.streams else None


# -- the server ---------------------------------------------------------------------


@dataclass
class Server:
    process: trio.Process
    url: str
    data_dir: Path
    log_path: Path


async def start(tmp: Path, env: dict[str, str]) -> Server:
    port = free_port()
    data_dir = tmp / "data"
    log_path = tmp / "server.log"
    with log_path.open("ab") as out:
        process = await trio.lowlevel.open_process(
            server_command(port),
            cwd=tmp,
            env=server_env(data_dir, **env),
            stdout=out,
            stderr=out,
        )
    server = Server(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    with trio.fail_after(PATIENCE):
        async with httpx.AsyncClient(timeout=30.0) as http:
            while True:
                if process.returncode is not None:
                    raise SystemExit(f"the server exited during startup; see {log_path}")
                try:
                    response = await http.get(f"{server.url}/health")
                    if response.json()["checks"]["graph"]["status"] == "ok":
                        return server
                except (httpx.TransportError, ValueError):
                    pass
                await trio.sleep(0.1)


async def stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    with trio.move_on_after(PATIENCE):
        await server.process.wait()
    if server.process.returncode is None:
        server.process.kill()
        await server.process.wait()


def fakes_env(llm_url: str, embeddings_url: str, streams: int) -> dict[str, str]:
    return {
        **fake_apis_env(llm_url, embeddings_url),
        # the defaults (64 chats, 8 LLM requests at once) would queue most streams
        "CHAT_MAX_CONCURRENCY": str(max(256, 2 * streams)),
        "LLM_MAX_CONCURRENCY": str(max(128, streams)),
        "LOG_LEVEL": "WARNING",
    }


# -- one run ------------------------------------------------------------------------


async def one_run(streams: int) -> Run:
    run = Run(streams)
    held = trio.Event()  # never set: every answer stops after its first words
    llm = FakeLlm([Text(FIRST + REST, pieces=2, pause=held)], keep_bodies=False)
    embeddings = FakeEmbeddings(dimensions=16)
    with tempfile.TemporaryDirectory(prefix="agent-trio-shutdown-") as name:
        tmp = Path(name)
        async with trio.open_nursery() as fakes:
            env = fakes_env(
                await fakes.start(llm.serve), await fakes.start(serve, embeddings), streams
            )
            server = await start(tmp, env)
            try:
                run.loads["before"] = load_average()
                await stop_with_open_streams(server, llm, run)
                run.loads["after"] = load_average()
                run.interrupted = await stored_interrupted(tmp, env, streams)
            except BaseException:
                log(f"the server's log: {server.log_path}")
                log(server.log_path.read_text()[-3000:])
                raise
            finally:
                if server.process.returncode is None:
                    server.process.kill()
                    await server.process.wait()
            fakes.cancel_scope.cancel()
    return run


def session_id(n: int) -> str:
    return f"held-{n}"


def message(n: int) -> str:
    return f"Talk until I stop you ({n})."


async def stop_with_open_streams(server: Server, llm: FakeLlm, run: Run) -> None:
    began = 0
    all_began = trio.Event()
    sent_at = trio.Event()
    signalled = 0.0
    limits = httpx.Limits(max_connections=run.streams)
    async with httpx.AsyncClient(base_url=server.url, timeout=PATIENCE, limits=limits) as http:

        async def stream(n: int) -> None:
            nonlocal began
            body = {"message": message(n), "session_id": session_id(n)}
            last, has_words = "no frame", False
            async with http.stream("POST", "/chat/stream", json=body) as response:
                if response.status_code != 200:
                    run.other_ends.append(f"HTTP {response.status_code}")
                    return
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    frame = json.loads(line.removeprefix("data:"))
                    last = f"{frame['type']} {frame.get('code', '')}".strip()
                    if frame["type"] == "text" and not has_words:
                        has_words = True
                        began += 1
                        if began == run.streams:
                            all_began.set()
                    if frame["type"] == "error" and frame.get("code") == "shutting_down":
                        await sent_at.wait()
                        run.told.append(trio.current_time() - signalled)
                        return
            run.other_ends.append(last)

        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                for n in range(run.streams):
                    nursery.start_soon(stream, n)
                log(f"waiting for {run.streams} streams to have their first words")
                with trio.move_on_after(PATIENCE) as waiting:
                    await all_began.wait()
                    await llm.wait_until(lambda f: f.in_flight == run.streams)
                if waiting.cancelled_caught:
                    raise SystemExit(
                        f"{began} of {run.streams} streams have their first words and the "
                        f"fake LLM holds {llm.in_flight} requests after {PATIENCE:g} s"
                    )
                log(f"all {run.streams} held at the upstream: SIGTERM")
                signalled = trio.current_time()
                server.process.send_signal(signal.SIGTERM)
                sent_at.set()
                run.exit_code = await server.process.wait()
                run.exited = trio.current_time() - signalled
                run.engines_at_exit = len(engine_pids(server.data_dir))
                await until_no_engine(server.data_dir, every=0.01)
                run.engine_gone = trio.current_time() - signalled
    log(
        f"told {len(run.told)} of {run.streams}, the last after {_seconds([run.last_told])}; "
        f"exit {run.exit_code} after {_seconds([run.exited])}; engine gone after "
        f"{_seconds([run.engine_gone])}"
    )


async def stored_interrupted(tmp: Path, env: dict[str, str], streams: int) -> int:
    """A second server on the same data directory: how many answers are stored
    ``interrupted``, as far as they went."""
    server = await start(tmp, env)
    try:
        count = 0
        async with httpx.AsyncClient(base_url=server.url, timeout=PATIENCE) as http:
            for n in range(streams):
                messages = (await http.get(f"/sessions/{session_id(n)}")).json()["messages"]
                pairs = [(m["role"], m["status"], m["content"]) for m in messages]
                count += pairs == [
                    ("user", "complete", message(n)),
                    ("assistant", "interrupted", FIRST),
                ]
        return count
    finally:
        await stop(server)


# -- the report ----------------------------------------------------------------------


def checks(runs: list[Run]) -> list[tuple[str, str, bool]]:
    """(what, figure over the runs, met) for each of the issue's conditions."""
    told = [len(r.told) for r in runs]
    last = [r.last_told for r in runs]
    exited = [r.exited for r in runs]
    gone = [r.engine_gone for r in runs]
    n = runs[0].streams
    return [
        (
            "streams ended with `error` `shutting_down`",
            " / ".join(f"{t} of {n}" for t in told),
            all(t == n for t in told),
        ),
        (
            f"SIGTERM → the last stream's `shutting_down` frame (≤ {BOUND:g} s)",
            _seconds(last),
            all(s is not None and s <= BOUND for s in last),
        ),
        (
            f"SIGTERM → process exit (≤ {BOUND:g} s)",
            _seconds(exited),
            all(s is not None and s <= BOUND for s in exited),
        ),
        (
            "exit status",
            " / ".join(str(r.exit_code) for r in runs),
            all(r.exit_code == 0 for r in runs),
        ),
        (
            f"engine processes left at the exit; SIGTERM → none left (≤ {BOUND:g} s)",
            " / ".join(str(r.engines_at_exit) for r in runs) + "; " + _seconds(gone),
            all(s is not None and s <= BOUND for s in gone),
        ),
        (
            "answers stored `interrupted` (read back by a second server)",
            " / ".join(f"{r.interrupted} of {n}" for r in runs),
            all(r.interrupted == n for r in runs),
        ),
    ]


def _seconds(values: list[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.2f} s" for v in values)


def section(runs: list[Run], command: str) -> str:
    n = runs[0].streams
    loads = "; ".join(
        f"run {i}: {r.loads.get('before', '?')} before, {r.loads.get('after', '?')} after"
        for i, r in enumerate(runs, 1)
    )
    intro = f"""The real server (`hypercorn --config hypercorn.toml agent_trio.app:app`) on
    the embedded engine, a fresh data directory per run; its LLM and embeddings API are
    the fakes of `tests/support/`, in the bench's process on loopback. {n}
    `POST /chat/stream` at once; the fake LLM sends each answer's first words and holds
    the rest. Once every stream has its first `text` frame and the fake holds all {n}
    requests, SIGTERM. Times are from the signal, on the bench's clock; the bound is the
    issue's: `graceful_timeout` ({GRACEFUL_TIMEOUT:g} s, hypercorn.toml) + 2 s. Limits
    raised for the run: CHAT_MAX_CONCURRENCY {max(256, 2 * n)}, LLM_MAX_CONCURRENCY
    {max(128, n)}. {len(runs)} run{"s" if len(runs) > 1 else ""}. {machine(shared=True)},
    {time.strftime("%Y-%m-%d %H:%M")}; the machine is shared with other work, load
    average (1, 5, 15 min): {loads}."""
    lines = [
        f"## Shutdown: SIGTERM with {n} open streams",
        "",
        f"Command: `{command}`",
        "",
        _fill(intro),
        "",
        "| check (each run) | figure | |",
        "|---|---:|---|",
        *(
            f"| {what} | {fig} | {'met' if ok else '**missed**'} |"
            for what, fig, ok in checks(runs)
        ),
        "",
        "| from SIGTERM, each run | first told | median told | last told | exit | engine gone |",
        "|---|---:|---:|---:|---:|---:|",
        *(_row(i, r) for i, r in enumerate(runs, 1)),
    ]
    ended = sorted({end for r in runs for end in r.other_ends})
    if ended:
        lines += ["", "Streams that ended otherwise: " + ", ".join(f"`{e}`" for e in ended)]
    return "\n".join(lines) + "\n"


def _row(i: int, r: Run) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    first = min(r.told) if r.told else None
    median = statistics.median(r.told) if r.told else None
    return (
        f"| run {i} | {s(first)} | {s(median)} | {s(r.last_told)} | {s(r.exited)} "
        f"| {s(r.engine_gone)} |"
    )


def _fill(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100, help="streams open at SIGTERM")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        log(f"run {i + 1} of {args.runs} (load {load_average()})")
        runs.append(trio.run(one_run, args.streams))
    command = ".venv/bin/python bench/shutdown.py" + "".join(
        f" --{name} {value}"
        for name, value, default in (("streams", args.streams, 100), ("runs", args.runs, 3))
        if value != default
    )
    text = section(runs, command)
    print(text)
    if args.write:
        write_section("shutdown", text)
        log("wrote its section of docs/benchmarks.md")
    return 0 if all(ok for _, _, ok in checks(runs)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
