"""Embedder benchmark: our HTTP embedder against a fake server with real limits and faults.

A fake OpenAI-compatible embedding server (``tests/support/fake_embeddings.py``) runs in its
own process on 127.0.0.1 and enforces a rolling-window rate limit and a concurrency
limit (429 beyond either), and can answer 500s and cut connections. Every vector it
sends is a function of its text, so each one we get back is checked.

Time is scaled: a rate-limit window is ``--window`` seconds (6 s by default, standing
for a minute: "60 per window" is "60/min" at 10x speed). Request latency is real.

Scenarios:

a. our embedder configured with the server's real limits;
b. our embedder configured 4x too high (concurrency and rate): AIMD must find them;
c. side by side with the predecessor's algorithm (re-expressed below in plain
   asyncio) under a fault mix: a concurrency limit of 2 below its setting of 3, and
   15 % of requests answered 500;
d. the same two under a well-behaved 30-per-window limit and no faults;
e. (extra) the fault mix of (c) plus 5 % of connections cut without an answer.

Run: ``.venv/bin/python bench/embedder.py`` (about 4 minutes), ``--quick`` for a
short run; the table goes to stdout and, with ``--write``, to its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import write_section

from agent_trio import AgentTrioError, load_settings
from agent_trio.service import embedding_config
from agent_trio.upstream import EmbedderStats, UpstreamTuning, open_embedder, use_own_retry_logs
from tests.support.fake_embeddings import text_vector

ROOT = Path(__file__).resolve().parent.parent
DIMS = 16


@dataclass(frozen=True)
class ServerLimits:
    concurrency: int
    rate: int  # per window
    latency: float = 0.3
    p500: float = 0.0
    pcut: float = 0.0


@dataclass
class Outcome:
    client: str
    scenario: str
    limits: ServerLimits
    texts: int
    batch: int
    elapsed: float
    vectors_ok: int = 0
    wrong: int = 0  # zero-filled or not the text's vector
    missing: int = 0
    error: str = ""
    requests: int = 0
    throttled: int = 0
    throttled_second_half: float = 0.0
    ideal: float = 0.0
    notes: str = ""
    server: dict[str, Any] = field(default_factory=dict)


# -- the predecessor's algorithm, re-expressed ---------------------------------------------
async def predecessor_embed(
    base_url: str,
    texts: Sequence[str],
    *,
    window: float,
    per_window: int = 60,
    started: list[float],
) -> list[list[float]]:
    """Semaphore 3, a wall-clock sliding window, sleep on 429 holding the slot, three
    attempts without back-off, and zero vectors for a batch that still failed."""
    semaphore = asyncio.Semaphore(3)
    stamps: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def rate_wait() -> None:  # racy: every waiter sleeps the same, then all go
            now = time.time()
            stamps[:] = [s for s in stamps if now - s < window]
            if len(stamps) >= per_window:
                await asyncio.sleep(window - (now - stamps[0]))
            stamps.append(time.time())

        async def batch(chunk: Sequence[str]) -> list[list[float]]:
            async with semaphore:
                for attempt in range(3):
                    await rate_wait()
                    try:
                        r = await client.post("/embeddings", json={"model": "m", "input": chunk})
                        if r.status_code == 429:  # sleeps while holding its slot
                            await asyncio.sleep(float(r.headers.get("Retry-After", 2**attempt)))
                            continue
                        r.raise_for_status()
                        return [d["embedding"] for d in r.json()["data"]]
                    except Exception:  # the predecessor retried at once
                        continue
                return [[0.0] * DIMS for _ in chunk]  # silently zero-filled

        started.append(time.perf_counter())  # the client is open: the work starts
        parts = await asyncio.gather(
            *(batch(texts[i : i + 100]) for i in range(0, len(texts), 100))
        )
    return [vector for part in parts for vector in part]


# -- ours -------------------------------------------------------------------------------------
async def ours_embed(
    base_url: str,
    texts: Sequence[str],
    *,
    window: float,
    concurrency: int,
    rate: int,
    batch: int,
    started: list[float],
) -> tuple[list[list[float]], EmbedderStats]:
    settings = load_settings(
        _env_file=None,
        embedding_provider="openai",
        embedding_base_url=base_url,
        embedding_model="fake",
        embedding_dimensions=DIMS,
        embedding_max_concurrency=concurrency,
        embedding_rate_limit_per_minute=rate,
        embedding_batch_size=batch,
        embedding_request_timeout_seconds=30,
    )
    tuning = UpstreamTuning(rate_period=window)
    async with open_embedder(embedding_config(settings), tuning=tuning) as embedder:
        started.append(time.perf_counter())  # the client is open: the work starts
        vectors = await embedder.embed(texts)
        return vectors, embedder.statistics()


# -- running a scenario -------------------------------------------------------------------
class Server:
    def __init__(self, limits: ServerLimits, window: float, seed: int) -> None:
        self.limits = limits
        args = [
            sys.executable,
            "-m",
            "tests.support.fake_embeddings",
            f"--concurrency={limits.concurrency}",
            f"--rate={limits.rate}",
            f"--window={window}",
            f"--latency={limits.latency}",
            f"--p500={limits.p500}",
            f"--pcut={limits.pcut}",
            f"--dims={DIMS}",
            f"--seed={seed}",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.url = f"http://{line.split()[-1]}/v1"

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url.replace("/v1", "/stats"), timeout=10).json()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def make_texts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = ["graph", "trio", "vector", "nursery", "cancel", "scope", "limit", "embedding"]
    words += ["retrieval", "agent", "query", "chunk", "entity", "edge", "fact", "session"]
    texts = []
    for i in range(count):
        body = " ".join(rng.choice(words) for _ in range(60))
        texts.append(f"{i:06d} {body}"[:300].ljust(300, "."))
    return texts


def check(texts: Sequence[str], vectors: Sequence[Sequence[float]]) -> tuple[int, int, int]:
    ok = wrong = 0
    for text, vector in zip(texts, vectors, strict=False):
        if list(vector) == text_vector(text, DIMS):
            ok += 1
        else:
            wrong += 1
    return ok, wrong, max(0, len(texts) - len(vectors))


def ideal_seconds(requests: int, limits: ServerLimits, window: float) -> float:
    """How long a perfect client takes for ``requests`` accepted requests: it starts
    each one as early as the server's concurrency and rolling window allow."""
    slots = [0.0] * limits.concurrency
    starts: list[float] = []
    for n in range(requests):
        t = min(slots)
        if n >= limits.rate:
            t = max(t, starts[n - limits.rate] + window)
        starts.append(t)
        slots[slots.index(min(slots))] = t + limits.latency
    return max(slots)


def attempts_needed(successes: int, limits: ServerLimits, seed: int) -> int:
    """Accepted requests it takes to get ``successes`` answers from a server seeded ``seed``.

    The server draws one fault roll per accepted request from ``random.Random(seed)``
    (429s draw none), so any client meets the same faults in the same order: this
    is what the fault sequence costs even a perfect client.
    """
    rng = random.Random(seed)
    failing = limits.pcut + limits.p500
    attempts = got = 0
    while got < successes:
        attempts += 1
        got += rng.random() >= failing
    return attempts


def run(
    client: str,
    scenario: str,
    limits: ServerLimits,
    texts: list[str],
    *,
    window: float,
    batch: int,
    config: tuple[int, int] | None = None,
    seed: int = 1,
) -> Outcome:
    server = Server(limits, window, seed)
    outcome = Outcome(client, scenario, limits, len(texts), batch, 0.0)
    started: list[float] = []
    vectors: list[list[float]] = []
    try:
        if client == "ours":
            concurrency, rate = config or (limits.concurrency, limits.rate)
            outcome.notes = f"configured concurrency {concurrency}, {rate}/window"
            vectors, stats = trio.run(
                lambda: ours_embed(
                    server.url,
                    texts,
                    window=window,
                    concurrency=concurrency,
                    rate=rate,
                    batch=batch,
                    started=started,
                )
            )
            assert stats.upstream is not None  # an HTTP embedder
            adaptive = stats.upstream.adaptive
            outcome.notes += (
                f"; ended at concurrency {adaptive.concurrency}, {adaptive.rate_per_window}/window"
            )
        else:
            per_window = config[1] if config else 60
            outcome.notes = f"semaphore 3, {per_window}/window"
            vectors = asyncio.run(
                predecessor_embed(
                    server.url, texts, window=window, per_window=per_window, started=started
                )
            )
    except AgentTrioError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"[:120]
    outcome.elapsed = time.perf_counter() - started[0]
    outcome.server = server.stats()
    server.close()
    outcome.vectors_ok, outcome.wrong, outcome.missing = check(texts, vectors)
    log = outcome.server["log"]
    outcome.requests = len(log)
    outcome.throttled = sum(1 for _, status in log if status == 429)
    half = log[len(log) // 2 :]
    outcome.throttled_second_half = sum(1 for _, s in half if s == 429) / max(1, len(half))
    batches = math.ceil(len(texts) / batch)
    outcome.ideal = ideal_seconds(attempts_needed(batches, limits, seed), limits, window)
    return outcome


# -- report -------------------------------------------------------------------------------
HEADER = (
    "| scenario | client | server limits | texts/s | achieved ÷ allowed | requests | 429s "
    "(2nd half) | wrong or missing | result |"
)


def row(o: Outcome, window: float) -> str:
    lim = o.limits
    faults = []
    if lim.p500:
        faults.append(f"{lim.p500:.0%} 500s")
    if lim.pcut:
        faults.append(f"{lim.pcut:.0%} cut")
    limits = f"conc {lim.concurrency}, {lim.rate}/{window:g} s" + (
        ", " + ", ".join(faults) if faults else ""
    )
    lost = o.wrong + o.missing
    result = o.error or ("all vectors correct" if lost == 0 else f"{lost} vectors wrong")
    return (
        f"| {o.scenario} | {o.client} | {limits} | {o.vectors_ok / o.elapsed:,.0f} | "
        f"{o.ideal / o.elapsed:.3f} | {o.requests} | {o.throttled} "
        f"({o.throttled_second_half:.1%}) | {lost} | {result} |"
    )


def report(
    outcomes: list[Outcome], window: float, command: str, seconds: float, *, quick: bool = False
) -> str:
    lines = [
        "## Embedder under rate limits and faults",
        "",
        f"Command: `{command}` ({seconds:.0f} s wall time on this machine: 2 shared cores).",
        "",
        "A fake OpenAI-compatible server in its own process on 127.0.0.1 enforces a "
        "concurrency limit and a rolling-window rate limit (429 beyond either; rate 429s "
        f"carry Retry-After), with 300 ms per request. Time is scaled: the window is "
        f"{window:g} s and stands for a minute, so '60/{window:g} s' is '60/min' at "
        f"{60 / window:g}x speed. Texts are 300 characters; every vector is checked "
        "against the text it belongs to.",
        "",
        "The predecessor's algorithm is re-expressed in plain asyncio (`predecessor_embed` "
        "in bench/embedder.py): a semaphore of 3, a wall-clock sliding window of 60 (30 in "
        "d) requests per window that is checked and then slept on without a lock, a sleep "
        "for Retry-After on a 429 while holding its semaphore slot, three attempts with no "
        "back-off for other errors, and zero vectors for a batch that still failed. Ours is "
        "`open_embedder` with the configuration named in the notes (defaults otherwise: 5 "
        "attempts, back-off from 0.2 s). Rows a and b send 20 texts per request, c to e 100 "
        "(as the predecessor did).",
        "",
        "*achieved ÷ allowed*: the time a perfect client needs for the same work at the "
        "server's limits (each request started as early as the concurrency limit and the "
        "rolling window allow; with faults, as many accepted requests as the server's "
        "seeded fault sequence takes to answer every batch, which any client meets in the "
        "same order: `attempts_needed`) divided by the time taken, from the moment the "
        "client was open to the last vector. "
        "*429s (2nd half)*: share of 429 answers among the second half of "
        "the requests, after convergence.",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|---|",
        *(row(o, window) for o in outcomes),
        "",
        *verdicts(outcomes, quick=quick),
        "",
        "Notes per row:",
        "",
        *(
            f"- {o.scenario}, {o.client}: {o.notes}; server counts {o.server['counts']}, "
            f"max in flight {o.server['max_in_flight']}."
            for o in outcomes
        ),
        "",
    ]
    return "\n".join(lines)


def verdicts(outcomes: list[Outcome], *, quick: bool = False) -> list[str]:
    """The issue's criteria, checked against the rows above.

    They are set for the full scenario (12,000 texts). A quick run is a quarter of
    it, where the first seconds (AIMD finding the concurrency limit) weigh four
    times as much: its figures are shown, not judged.
    """
    by = {(o.scenario[0], o.client): o for o in outcomes}
    lines = [
        "Criteria" + (" (a quick run: shown, judged on the full run only):" if quick else ":"),
        "",
    ]

    def verdict(ok: bool) -> str:
        return "not judged" if quick else "met" if ok else "NOT met"

    if (a := by.get(("a", "ours"))) is not None:
        ok = a.ideal / a.elapsed >= 0.97 and a.throttled == 0
        lines.append(
            f"- (a) ≥ 0.97 of the allowed rate with zero 429s: {a.ideal / a.elapsed:.3f}, "
            f"{a.throttled} 429s - {verdict(ok)}."
        )
    if (b := by.get(("b", "ours"))) is not None:
        ok = b.throttled_second_half <= 0.02
        lines.append(
            f"- (b) ≤ 2 % of requests answered 429 after convergence: "
            f"{b.throttled_second_half:.1%} - {verdict(ok)}."
        )
    for key in ("c", "e"):
        ours, old = by.get((key, "ours")), by.get((key, "predecessor"))
        if ours is None:
            continue
        lost = ours.wrong + ours.missing
        ratio = ours.ideal / ours.elapsed
        ok = not ours.error and lost == 0 and ratio >= 0.9
        got = f"failed loudly ({ours.error})" if ours.error else f"{lost} wrong or missing"
        old_lost = (
            f"; the predecessor's algorithm silently returned {old.wrong + old.missing} "
            "zero vectors"
            if old
            else ""
        )
        lines.append(
            f"- ({key}) every vector correct (or a loud failure) at ≥ 0.9 of what the limits "
            f"allow: {got}, {ratio:.3f}{old_lost} - {verdict(ok)}."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer texts (about 1 minute)")
    parser.add_argument("--window", type=float, default=6.0, help="seconds standing for a minute")
    parser.add_argument(
        "--write", action="store_true", help="write its section of docs/benchmarks.md"
    )
    parser.add_argument("--only", default="abcde", help="scenarios to run, e.g. 'ac'")
    args = parser.parse_args(argv)
    use_own_retry_logs()  # retries are counted in the table, not logged per request
    window = args.window
    scale = 4 if args.quick else 1
    rate_texts = make_texts(12_000 // scale)
    fault_texts = make_texts(12_000 // scale)
    began = time.perf_counter()
    outcomes: list[Outcome] = []
    both = ("predecessor", "ours")
    # key, scenario, server limits, texts, texts per request, (concurrency, rate) set, clients
    scenarios: list[
        tuple[str, str, ServerLimits, list[str], int, tuple[int, int] | None, tuple[str, ...]]
    ] = [
        ("a", "a. right limits", ServerLimits(4, 60), rate_texts, 20, None, ("ours",)),
        (
            "b",
            "b. configured 4x too high",
            ServerLimits(4, 60),
            rate_texts,
            20,
            (16, 240),
            ("ours",),
        ),
        ("c", "c. fault mix", ServerLimits(2, 60, p500=0.15), fault_texts, 100, (3, 60), both),
        (
            "d",
            "d. 30/window, no faults",
            ServerLimits(3, 30),
            fault_texts[: 6_000 // scale],
            100,
            (3, 30),
            both,
        ),
        (
            "e",
            "e. fault mix + 5% cut",
            ServerLimits(2, 60, p500=0.15, pcut=0.05),
            fault_texts,
            100,
            (3, 60),
            both,
        ),
    ]
    for key, scenario, limits, texts, batch, config, clients in scenarios:
        if key not in args.only:
            continue
        for client in clients:
            outcome = run(
                client, scenario, limits, texts, window=window, batch=batch, config=config
            )
            outcomes.append(outcome)
            print(row(outcome, window), flush=True)
    seconds = time.perf_counter() - began
    command = ".venv/bin/python bench/embedder.py" + (" --quick" if args.quick else "")
    if args.window != 6.0:
        command += f" --window {args.window:g}"
    text = report(outcomes, window, command + " --write", seconds, quick=args.quick)
    print()
    print(text)
    if args.write:
        write_section("embedder", text)


if __name__ == "__main__":
    main()
