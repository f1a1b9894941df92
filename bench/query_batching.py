"""Query embeddings with and without the batcher: the local model alone, in one process.

    .venv/bin/python bench/query_batching.py [--clients 32] [--seconds 10] [--rounds 2] [--write]

Loads the shipped model once and makes two ``LocalEmbedder`` of it: one whose query
batcher runs (as ``open_embedder`` starts it), one without (each query a forward
pass of its own, as before the batcher). ``--clients`` tasks send distinct queries
to ``embed_query`` back to back for ``--seconds``, then one task sends
``--single`` queries one at a time; the two embedders take turns, ``--rounds``
times each, and the better round of each is shown with the others beside it. No
server, no graph: what is measured is the embedding of queries alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import trio
from _report import write_section
from concurrent_search import query, uptime

from agent_trio.upstream import LocalEmbedder
from agent_trio.upstream._local import load_local_model, resolve_local_model


@dataclass
class Figures:
    qps: float
    p50: float
    single_p50: float
    load: str


async def run_round(
    embedder: LocalEmbedder, clients: int, seconds: float, single: int, offset: int
) -> Figures:
    latencies: list[float] = []
    counter = iter(range(offset, offset + 10**8))
    deadline = trio.current_time() + seconds

    async def client() -> None:
        while trio.current_time() < deadline:
            began = trio.current_time()
            await embedder.embed_query(query(next(counter)))
            latencies.append(trio.current_time() - began)

    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    took = trio.current_time() - began
    load = uptime()
    singles = []
    for i in range(single):
        t = trio.current_time()
        await embedder.embed_query(query(offset + 5 * 10**7 + i))
        singles.append(trio.current_time() - t)
    return Figures(
        len(latencies) / took,
        statistics.median(latencies) * 1000,
        statistics.median(singles) * 1000,
        load,
    )


async def measure(args: argparse.Namespace) -> dict[str, list[Figures]]:
    model = await trio.to_thread.run_sync(load_local_model, resolve_local_model("all-MiniLM-L6-v2"))
    batched = LocalEmbedder(model, name="all-MiniLM-L6-v2", dimensions=384)
    alone = LocalEmbedder(model, name="all-MiniLM-L6-v2", dimensions=384)
    runs: dict[str, list[Figures]] = {"batched": [], "one pass per query": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(batched.serve_queries)
        await run_round(alone, 4, 1.0, 5, 0)  # warm-up
        for r in range(args.rounds):
            for name, embedder in (("batched", batched), ("one pass per query", alone)):
                figures = await run_round(
                    embedder, args.clients, args.seconds, args.single, (r + 1) * 10**9
                )
                runs[name].append(figures)
                print(name, r, figures, flush=True)
        batched.close()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--single", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    began = time.monotonic()
    runs = trio.run(measure, args)
    best = {name: max(figs, key=lambda f: f.qps) for name, figs in runs.items()}
    rows = [
        f"| {name} | {f.qps:.1f} | {f.p50:.0f} ms | {f.single_p50:.1f} ms | {f.load} "
        f"| {', '.join(f'{g.qps:.1f}' for g in runs[name])} |"
        for name, f in best.items()
    ]
    ratio = best["batched"].qps / best["one pass per query"].qps
    text = "\n".join(
        [
            "## Query embeddings: the batcher against one pass per query",
            "",
            f"Command: `.venv/bin/python bench/query_batching.py --clients {args.clients} "
            f"--seconds {args.seconds:g} --write` ({time.monotonic() - began:.0f} s; "
            f"{os.cpu_count()} CPUs shared with other work, Python {sys.version.split()[0]}).",
            "",
            "The shipped local model, in this process, no server and no graph: "
            f"{args.clients} tasks call `embed_query` with distinct queries back to back "
            f"for {args.seconds:g} s, then one task {args.single} times (*single*). The "
            "two take turns; the better round of each is shown, every round's figure "
            "beside it. *load*: load average (1, 5, 15 min) after the concurrent part.",
            "",
            "| queries | queries/s | p50 | single p50 | load | queries/s of each round |",
            "|---|---:|---:|---:|---|---|",
            *rows,
            "",
            f"Batched over one pass per query: **{ratio:.1f}x** the queries per second.",
        ]
    )
    print(text)
    if args.write:
        write_section("query-batching", text)


if __name__ == "__main__":
    main()
