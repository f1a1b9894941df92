"""The fault soak: many chats against upstreams that stall, reset, throttle, fail and
send garbage, from clients that leave at random points; then nothing may be left over.

    .venv/bin/python bench/soak.py [--chats 10000] [--clients 32] [--streams 0.5]
                                   [--leave 0.1] [--stall 0.02] [--cut 0.02]
                                   [--throttle 0.02] [--error 0.02] [--garbage 0.02]
                                   [--seed 1] [--write]

One real server process (``hypercorn --config hypercorn.toml agent_trio.app:app``)
on the embedded engine. Its LLM is the fake of ``tests/support/fake_llm.py`` and its
embeddings API the fake of ``tests/support/fake_embeddings.py``, both in this
process on loopback, each request of theirs given a fault by a seeded RNG on its
number (``tests/support/faults.py``): a stall longer than the server's per-attempt
deadline, a connection reset (before the head, or mid-stream), a 429 with
``Retry-After``, a 500, a malformed body. The sample corpus is posted first, without
faults. Then ``--chats`` chats (``tests/support/soak.py``: half ``/chat``, half
``/chat/stream``; a share ``--leave`` of the clients leave, right after sending or
after some frames) from ``--clients`` clients, after a warm-up of four chats per
client that brings the connection pools to their size.

At the end (every wait a bounded poll) it checks, and prints:

* limiter tokens borrowed: 0 (``/health``);
* live Trio tasks (``agent_trio_trio_tasks`` on ``/metrics``) back to their count
  before the load;
* open fds of the server (``/proc/PID/fd``) back to their count before ± 2;
* RSS (``VmRSS``) growth under 5 % from the end of the first thousand chats to the
  end of the last (blocks of ``--chats``/2 when there are fewer than 2000);
* every chat's session read back: each accepted user message stored, followed by
  the answer with a final status that fits what its client saw;
* no 5xx but the contract's 503 (with ``Retry-After``) and 504; no error frame but a
  dependency's.

Exits 1 when a check fails. ``--write`` puts the figures in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from _report import write_section
from _server import free_port, machine, server_command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_embeddings import FakeEmbeddings, hashed_vector, serve  # noqa: E402
from tests.support.fake_llm import FakeLlm, agentic_script  # noqa: E402
from tests.support.faults import Faults  # noqa: E402
from tests.support.soak import (  # noqa: E402
    Probe,
    Tally,
    check_outcomes,
    check_sessions,
    plan,
    poll_until,
    run_chats,
)

CORPUS = ROOT / "examples" / "corpus"
#: the server's per-attempt deadline for either upstream; stalls last longer
ATTEMPT_TIMEOUT = 2.0
#: how long httpx keeps an idle pooled connection (its default): the pools shrink
#: to what one chat needs after this much quiet
POOL_EXPIRY = 5.0
#: every wait for the server is bounded by this
PATIENCE = 120.0
ANSWER = "The answer is in the sources, as the search found them, word by word."


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the server ---------------------------------------------------------------------


async def start_server(tmp: Path, llm_url: str, embed_url: str) -> tuple[trio.Process, str, Path]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEO4J_", "LLM_", "EMBEDDING_", "API_KEY", "INGEST_", "UPSTREAM_"))
    }
    env.update(
        AGENT_DATA_DIR=str(tmp / "data"),
        LLM_PROVIDER="openai",
        LLM_BASE_URL=llm_url,
        LLM_API_KEY="soak",
        LLM_CHOICE="fake-model",
        LLM_MAX_CONCURRENCY="256",
        LLM_REQUEST_TIMEOUT_SECONDS=str(ATTEMPT_TIMEOUT),
        EMBEDDING_PROVIDER="openai",
        EMBEDDING_BASE_URL=embed_url,
        EMBEDDING_API_KEY="soak",
        EMBEDDING_MODEL="fake-embedding",
        EMBEDDING_DIMENSIONS="384",
        EMBEDDING_RATE_LIMIT_PER_MINUTE="0",
        EMBEDDING_MAX_CONCURRENCY="64",
        EMBEDDING_REQUEST_TIMEOUT_SECONDS=str(ATTEMPT_TIMEOUT),
        CHAT_MAX_CONCURRENCY="1024",
        # a run of failures opens a breaker; a short cool-down lets the soak go on
        UPSTREAM_BREAKER_COOLDOWN_SECONDS="2",
        LOG_LEVEL="WARNING",
    )
    log_path = tmp / "server.log"
    with log_path.open("wb") as out:
        process = await trio.lowlevel.open_process(
            server_command(port),
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log_path


async def wait_healthy(url: str, process: trio.Process, log_path: Path) -> None:
    async with httpx.AsyncClient(timeout=30.0) as http:
        with trio.fail_after(PATIENCE):
            while True:
                if process.returncode is not None:
                    raise SystemExit(f"the server exited; see {log_path}")
                try:
                    response = await http.get(f"{url}/health")
                    if response.json()["checks"]["graph"]["status"] == "ok":
                        return
                except (httpx.TransportError, ValueError):
                    pass
                await trio.sleep(0.2)


async def ingest_corpus(url: str) -> int:
    chunks = 0
    async with httpx.AsyncClient(timeout=PATIENCE) as http:
        for path in sorted(CORPUS.iterdir()):
            body = {"title": path.stem, "source": path.name, "content": path.read_text()}
            response = await http.post(f"{url}/documents", json=body)
            response.raise_for_status()
            chunks += int(response.json()["chunk_count"])
    return chunks


# -- the run ------------------------------------------------------------------------


@dataclass
class State:
    """What the server's process holds at one moment."""

    tasks: int
    fds: int
    rss: int
    borrowed: int


@dataclass
class Results:
    args: argparse.Namespace
    chunks: int = 0
    block: int = 1000
    loads: dict[str, str] = field(default_factory=dict)
    before: State | None = None
    after: State | None = None
    limiters_zero_after: float | None = None
    tasks_back_after: float | None = None
    fds_back_after: float | None = None
    rss_samples: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    injected: Counter[str] = field(default_factory=Counter)
    upstream_requests: dict[str, int] = field(default_factory=dict)
    broken_outcomes: list[str] = field(default_factory=list)
    broken_sessions: list[str] = field(default_factory=list)
    leaks: dict[str, Any] = field(default_factory=dict)

    @property
    def rss_growth(self) -> float:
        first, last = self.rss_samples[0][1], self.rss_samples[-1][1]
        return (last - first) / first

    def checks(self) -> list[tuple[str, str, bool]]:
        """(what, figure, met) for each check."""
        before, after = self.before, self.after
        assert before is not None
        assert after is not None
        return [
            (
                "limiter tokens borrowed (and waiting) at the end",
                f"{after.borrowed}",
                after.borrowed == 0,
            ),
            (
                "live Trio tasks, before the load / after",
                f"{before.tasks} / {after.tasks}",
                after.tasks == before.tasks,
            ),
            (
                "open fds of the server, before / after (± 2)",
                f"{before.fds} / {after.fds}",
                abs(after.fds - before.fds) <= 2,
            ),
            (
                f"RSS at the end of the first / last {self.block} chats (< 5 % growth)",
                f"{self.rss_samples[0][1] / 2**20:.1f} MB / "
                f"{self.rss_samples[-1][1] / 2**20:.1f} MB ({100 * self.rss_growth:+.2f} %)",
                self.rss_growth < 0.05,
            ),
            (
                "sessions read back that break a rule",
                f"{len(self.broken_sessions)} of {len(self.tally.outcomes)}",
                not self.broken_sessions,
            ),
            (
                "answers that break the contract (5xx but 503/504, error frames, cut streams)",
                f"{len(self.broken_outcomes)}",
                not self.broken_outcomes,
            ),
        ]


async def state(probe: Probe, pid: int) -> State:
    return State(await probe.tasks(), open_fds(pid), rss_bytes(pid), await probe.borrowed())


async def quiet_pools(url: str, seed: int) -> None:
    """Let the pooled upstream connections expire, then run one chat: the pools hold
    what one chat needs, before the load as after it."""
    await trio.sleep(POOL_EXPIRY + 0.5)
    chats = iter([plan(0, seed=seed, run=f"quiet-{time.time_ns()}", leave_share=0)])
    await run_chats(url, chats, clients=1)


async def run(args: argparse.Namespace) -> Results:
    results = Results(args)
    faults = Faults(
        stall=args.stall,
        cut=args.cut,
        throttle=args.throttle,
        error=args.error,
        garbage=args.garbage,
        seed=args.seed,
        stall_seconds=args.stall_seconds,
        retry_after=args.retry_after,
    )
    llm = FakeLlm(faults.llm_script(agentic_script(answer=ANSWER)), keep_bodies=False)
    embeddings = FakeEmbeddings(
        dimensions=384,
        vector=hashed_vector,
        fault=faults.embedding_fault,
        stall=args.stall_seconds,
        retry_after=args.retry_after,
    )
    with tempfile.TemporaryDirectory(prefix="agent-trio-soak-") as tmp:
        async with trio.open_nursery() as nursery:
            llm_url = await nursery.start(llm.serve)
            embed_url = await nursery.start(serve, embeddings)
            process, url, log_path = await start_server(Path(tmp), llm_url, embed_url)
            try:
                log(f"starting the server on {url}")
                await wait_healthy(url, process, log_path)
                log("posting the sample corpus (no faults yet)")
                results.chunks = await ingest_corpus(url)
                faults.active = True
                await soak(url, process.pid, args, results)
                results.injected = faults.injected
                results.upstream_requests = {
                    "llm": len(llm.requests),
                    "embedding": len(embeddings.requests),
                }
            finally:
                process.terminate()
                with trio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                if args.keep_log:
                    await trio.Path(args.keep_log).write_bytes(log_path.read_bytes())
                nursery.cancel_scope.cancel()
    return results


async def soak(url: str, pid: int, args: argparse.Namespace, results: Results) -> None:
    probe = Probe(url)
    run_id = f"soak-{time.time_ns()}"

    def plans(first: int, count: int, label: str) -> Iterator[Any]:
        for number in range(first, first + count):
            yield plan(
                number,
                seed=args.seed,
                run=f"{run_id}-{label}",
                stream_share=args.streams,
                leave_share=args.leave,
            )

    log(f"warm-up: {4 * args.clients} chats from {args.clients} clients")
    await run_chats(url, plans(0, 4 * args.clients, "warm"), clients=args.clients)
    await poll_until(probe.borrowed, lambda n: n == 0, within=PATIENCE)
    await quiet_pools(url, args.seed)
    results.before = await state(probe, pid)
    results.loads["before"] = load_average()
    log(f"before: {results.before} (load {results.loads['before']})")

    results.block = min(1000, max(1, args.chats // 2))

    def on_done(done: int) -> None:
        if done % results.block == 0 or done == args.chats:
            results.rss_samples.append((done, rss_bytes(pid)))
            if done % (5 * results.block) == 0 or done == args.chats:
                log(f"  {done} chats, RSS {rss_bytes(pid) / 2**20:.1f} MB (load {load_average()})")

    log(f"load: {args.chats} chats from {args.clients} clients")
    began = time.perf_counter()
    results.tally = await run_chats(
        url, plans(0, args.chats, "load"), clients=args.clients, on_done=on_done
    )
    results.seconds = time.perf_counter() - began
    results.loads["end of the load"] = load_average()

    borrowed, results.limiters_zero_after = await poll_until(
        probe.borrowed, lambda n: n == 0, within=PATIENCE
    )
    log(f"limiters back to zero after {results.limiters_zero_after} s ({borrowed} borrowed)")
    await quiet_pools(url, args.seed)
    before = results.before
    assert before is not None
    tasks, results.tasks_back_after = await poll_until(
        probe.tasks, lambda n: n == before.tasks, within=30.0
    )
    fds, results.fds_back_after = await poll_until(
        lambda: _fds(pid), lambda n: abs(n - before.fds) <= 2, within=30.0
    )
    # the polled values: a scrape's own connection task may linger a moment after it
    results.after = State(tasks, fds, rss_bytes(pid), await probe.borrowed())
    log(f"after: {results.after}")
    results.leaks = (await probe._get("/health")).json()["checks"].get("leaks", {})
    results.broken_outcomes = check_outcomes(results.tally)
    log("reading every session back")
    results.broken_sessions = await check_sessions(url, results.tally)


async def _fds(pid: int) -> int:
    return open_fds(pid)


# -- the report ----------------------------------------------------------------------


def section(r: Results, command: str) -> str:
    args = r.args
    tally = r.tally
    left = sum(1 for o in tally.outcomes if o.left)
    rates = (
        f"stall {args.stall:.0%} ({args.stall_seconds:g} s, over the {ATTEMPT_TIMEOUT:g} s"
        f" per-attempt deadline), reset {args.cut:.0%}, 429 {args.throttle:.0%}"
        f" (Retry-After {args.retry_after:g} s), 500 {args.error:.0%},"
        f" malformed body {args.garbage:.0%}"
    )
    loads = "; ".join(f"{when} {load}" for when, load in r.loads.items())
    intro = f"""The real server (`hypercorn --config hypercorn.toml agent_trio.app:app`) on
    the embedded engine; its LLM and embeddings API are the fakes of `tests/support/`, in
    the bench's process on loopback, with faults chosen per request number by a seeded
    RNG (seed {args.seed}): {rates} of each upstream's requests. {args.chats} chats from
    {args.clients} clients ({args.streams:.0%} `/chat/stream`; {args.leave:.0%} of the
    clients leave: right after sending, after the head, or after some frames), after a
    warm-up of {4 * args.clients} chats; {r.seconds:.0f} s. The corpus ({r.chunks}
    chunks) was posted first, without faults. Limits raised for the run:
    CHAT_MAX_CONCURRENCY 1024, LLM_MAX_CONCURRENCY 256, EMBEDDING_MAX_CONCURRENCY 64, no
    embedding rate limit, per-attempt deadlines {ATTEMPT_TIMEOUT:g} s, breaker cool-down
    2 s. {machine(shared=True)}, {time.strftime("%Y-%m-%d %H:%M")}; the machine is
    shared with other work, load average (1, 5, 15 min): {loads}."""
    lines = [
        "## Fault soak: nothing left over",
        "",
        f"Command: `{command}`",
        "",
        _fill(intro),
        "",
        "| check | figure | |",
        "|---|---:|---|",
        *(
            f"| {what} | {figure} | {'met' if ok else '**missed**'} |"
            for what, figure, ok in r.checks()
        ),
        "",
        "| answers | count |",
        "|---|---:|",
        *(f"| {what} | {n} |" for what, n in sorted(tally.statuses().items())),
        f"| clients that left (before an answer was complete) | {left} |",
        *(f"| stream ended: {what} | {n} |" for what, n in sorted(tally.ends().items())),
        *(f"| error frame `{code}` | {n} |" for code, n in sorted(tally.error_frames().items())),
        "",
        "| faults injected | count |",
        "|---|---:|",
        *(f"| {what} | {n} |" for what, n in sorted(r.injected.items())),
        *(f"| {name} requests in all | {n} |" for name, n in r.upstream_requests.items()),
        "",
        _fill(
            f"""Limiters back at zero {_after(r.limiters_zero_after)} after the last chat;
            tasks back {_after(r.tasks_back_after)} and fds {_after(r.fds_back_after)}
            after the pools' idle connections expired ({POOL_EXPIRY:g} s) and one chat ran,
            as before the load. RSS sampled every {r.block} chats:
            {", ".join(f"{mb / 2**20:.1f}" for _, mb in r.rss_samples)} MB. Leak watch at
            the end: {r.leaks.get("status", "?")} ({r.leaks.get("checks", "?")} checks)."""
        ),
    ]
    if r.broken_outcomes or r.broken_sessions:
        lines += ["", "Broken rules (the first ten):", ""]
        lines += [f"- {what}" for what in (r.broken_outcomes + r.broken_sessions)[:10]]
    return "\n".join(lines) + "\n"


def _after(seconds: float | None) -> str:
    return "not within the bound" if seconds is None else f"within {seconds:.1f} s"


def _fill(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=90)


DEFAULTS: dict[str, Any] = {
    "chats": 10_000,
    "clients": 32,
    "streams": 0.5,
    "leave": 0.1,
    "stall": 0.02,
    "cut": 0.02,
    "throttle": 0.02,
    "error": 0.02,
    "garbage": 0.02,
    "stall_seconds": 5.0,
    "retry_after": 0.05,
    "seed": 1,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=DEFAULTS["chats"])
    parser.add_argument("--clients", type=int, default=DEFAULTS["clients"])
    parser.add_argument(
        "--streams", type=float, default=DEFAULTS["streams"], help="share of /chat/stream"
    )
    parser.add_argument(
        "--leave", type=float, default=DEFAULTS["leave"], help="share of clients that leave"
    )
    for name in ("stall", "cut", "throttle", "error", "garbage"):
        parser.add_argument(
            f"--{name}", type=float, default=DEFAULTS[name], help="rate per upstream request"
        )
    parser.add_argument("--stall-seconds", type=float, default=DEFAULTS["stall_seconds"])
    parser.add_argument("--retry-after", type=float, default=DEFAULTS["retry_after"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--keep-log", help="copy the server's log here")
    args = parser.parse_args(argv)
    results = trio.run(run, args)
    command = ".venv/bin/python bench/soak.py" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name, default in DEFAULTS.items()
        if getattr(args, name) != default
    )
    text = section(results, command)
    print(text)
    for what in (results.broken_outcomes + results.broken_sessions)[:30]:
        log(f"broken: {what}")
    if args.write:
        write_section("soak", text)
        log("wrote its section of docs/benchmarks.md")
    return 0 if all(ok for _, _, ok in results.checks()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
