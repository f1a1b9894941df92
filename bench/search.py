"""Search latency against corpus size in the embedded engine: vector and hybrid, p50/p99.

    .venv/bin/python bench/search.py [--sizes 1000,10000,100000] [--queries 100]

Starts the embedded engine on a temporary data directory, grows a corpus of
random 384-dimensional unit vectors (seeded; no model) with texts of 40 words drawn
from a Zipf-distributed vocabulary (rank r drawn with weight 1/r) whose most common
ranks are English function words, then 5,000 synthetic words, written through
``KnowledgeStore.replace_documents`` in documents of 100 chunks. At each size it
measures, sequentially, ``Searcher.vector`` and ``Searcher.hybrid`` (limit 10)
with random query vectors (the query embedding is precomputed: its cost is not
measured) and five-word text queries from the same distribution, in two states of
the vector index:

* **pending**: right after the writes, while queries scan the vectors that are not
  in the index graph yet (30 queries of each kind, so that this ends before the
  engine starts building);
* **built**: after the engine built the index graph (it does so lazily, after ~15 s
  without writes or on the first query, at a few hundred vectors per second). The
  bench follows the engine's log and waits for "Built graph for index" over all
  the vectors (``--queries`` queries of each kind).

Prints progress to stderr and a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio
import trio_asyncio
from _report import write_section

from agent_trio import load_settings
from agent_trio.engine import EngineInfo, run_embedded_engine
from agent_trio.graph import (
    STOPWORDS,
    ArcadeDialect,
    ChunkRecord,
    DocumentRecord,
    DocumentVersion,
    GraphGateway,
    GraphTarget,
    KnowledgeStore,
    open_graph,
)
from agent_trio.search import Searcher
from agent_trio.search._fusion import reciprocal_rank_fusion
from agent_trio.service import engine_config

DIMENSIONS = 384
CHUNKS_PER_DOCUMENT = 100
#: documents per write transaction while the corpus grows
DOCUMENTS_PER_WRITE = 5
WORDS_PER_CHUNK = 40
#: function words first (the commonest ranks), then synthetic words
VOCABULARY = [*sorted(STOPWORDS), *(f"w{i}" for i in range(5000))]
QUERY_WORDS = 5
LIMIT = 10
#: the engine starts building after this many idle seconds (ENGINE.md) ...
BUILD_IDLE_SECONDS = 15.0
#: ... at about this many vectors per second (for the progress message only)
BUILD_RATE = 300.0
PROBE_EVERY = 2.0
#: give up waiting for a build after this long (and say so)
BUILD_DEADLINE = 1200.0
#: queries per measurement in the pending state: few, so that it ends before the
#: engine starts building (after BUILD_IDLE_SECONDS)
PENDING_QUERIES = 30


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Corpus:
    """Deterministic random vectors and texts."""

    rng: random.Random
    weights: list[float]

    @classmethod
    def seeded(cls, seed: int) -> Corpus:
        weights = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]  # Zipf, s = 1
        return cls(random.Random(seed), weights)

    def vector(self) -> list[float]:
        values = [self.rng.random() * 2.0 - 1.0 for _ in range(DIMENSIONS)]
        norm = math.sqrt(sum(v * v for v in values))
        return [v / norm for v in values]

    def words(self, n: int) -> str:
        return " ".join(self.rng.choices(VOCABULARY, weights=self.weights, k=n))

    def document(self, number: int) -> tuple[DocumentRecord, list[ChunkRecord]]:
        doc_id = f"bench-{number}"
        chunks = [
            ChunkRecord(
                id=f"{doc_id}:{i}",
                index=i,
                text=self.words(WORDS_PER_CHUNK),
                token_estimate=WORDS_PER_CHUNK,
                embedding=self.vector(),
            )
            for i in range(CHUNKS_PER_DOCUMENT)
        ]
        record = DocumentRecord(doc_id, f"Document {number}", f"{doc_id}.md", "", f"h{number}")
        return record, chunks


class PrecomputedEmbedder:
    """Hands out random query vectors prepared in advance (no embedding cost)."""

    dimensions = DIMENSIONS

    def __init__(self, corpus: Corpus, count: int) -> None:
        self._vectors = [corpus.vector() for _ in range(count)]
        self._next = 0

    async def embed_query(self, text: str) -> list[float]:
        vector = self._vectors[self._next % len(self._vectors)]
        self._next += 1
        return vector


@dataclass
class Row:
    size: int
    state: str
    vector_p50: float
    vector_p99: float
    hybrid_p50: float
    hybrid_p99: float
    waited: float
    before_p50: float = 0.0
    before_p99: float = 0.0
    load: str = ""


async def hybrid_before(
    store: KnowledgeStore, embedder: PrecomputedEmbedder, query: str, limit: int
) -> list[str]:
    """Hybrid search as it was: the two sides one after the other, and a query of
    common words alone searched for them. For comparison in the same run."""
    k = min(150, max(3 * limit, 20))
    by_vector = await store.vector_search(await embedder.embed_query(query), k)
    by_text = await store.fulltext_search(query, k)
    fused = reciprocal_rank_fusion([[h.chunk_id for h in by_vector], [h.chunk_id for h in by_text]])
    return sorted(fused, key=lambda cid: -fused[cid])[:limit]


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


async def timed(calls: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(calls):
        started = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - started) * 1000.0)
    return out


async def measure(
    searcher: Searcher,
    store: KnowledgeStore,
    embedder: PrecomputedEmbedder,
    queries: list[str],
    size: int,
    state: str,
    waited: float,
) -> Row:
    n = len(queries) if state == "built" else min(len(queries), PENDING_QUERIES)
    await timed(3, lambda i: searcher.hybrid(queries[-1 - i], LIMIT))  # warm-up, not counted
    vector = await timed(n, lambda i: searcher.vector(queries[i], LIMIT))
    hybrid = await timed(n, lambda i: searcher.hybrid(queries[i], LIMIT))
    before = await timed(n, lambda i: hybrid_before(store, embedder, queries[i], LIMIT))
    row = Row(
        size,
        state,
        statistics.median(vector),
        percentile(vector, 0.99),
        statistics.median(hybrid),
        percentile(hybrid, 0.99),
        waited,
        statistics.median(before),
        percentile(before, 0.99),
        " ".join(f"{x:.1f}" for x in os.getloadavg()),
    )
    log(
        f"{size} {state}: vector p50 {row.vector_p50:.1f} ms p99 {row.vector_p99:.1f} ms, "
        f"hybrid p50 {row.hybrid_p50:.1f} ms p99 {row.hybrid_p99:.1f} ms, "
        f"before p50 {row.before_p50:.1f} ms p99 {row.before_p99:.1f} ms, load {row.load}"
    )
    return row


async def grow(store: KnowledgeStore, corpus: Corpus, have: int, want: int) -> None:
    started = time.perf_counter()
    numbers = range(have // CHUNKS_PER_DOCUMENT, want // CHUNKS_PER_DOCUMENT)
    for first in numbers[::DOCUMENTS_PER_WRITE]:
        group = range(first, min(first + DOCUMENTS_PER_WRITE, numbers.stop))
        await store.replace_documents(
            [DocumentVersion(*corpus.document(number)) for number in group]
        )
        done = group.stop * CHUNKS_PER_DOCUMENT
        if done % 10_000 == 0:
            rate = (done - have) / (time.perf_counter() - started)
            log(f"wrote {done} chunks ({rate:.0f} chunks/s)")


class BuildWatch(logging.Handler):
    """Follows the engine's log (``agent_trio.engine``) for vector index builds."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.building = 0  # vectors in the build under way
        self.built = 0  # vectors in the last completed build
        self.progress = ""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if match := _BUILDING.search(text):
            self.building = int(match.group(1))
        elif match := _PROGRESS.search(text):
            self.progress = match.group(1)
        elif _BUILT in text:
            self.built = self.building


_BUILDING = re.compile(r"\[LSMVectorIndex\] Building graph with (\d+) vectors")
_PROGRESS = re.compile(r"Graph build building: (\d+/\d+)")
_BUILT = "[LSMVectorIndex] Built graph for index"


async def wait_for_build(watch: BuildWatch, size: int) -> float:
    """Wait until the engine reports a completed build over all ``size`` vectors."""
    started = time.perf_counter()
    expected = BUILD_IDLE_SECONDS + size / BUILD_RATE
    log(f"waiting for the index build over {size} vectors (about {expected:.0f} s)")
    while watch.built < size:
        elapsed = time.perf_counter() - started
        if elapsed > BUILD_DEADLINE:
            log(f"no completed build after {elapsed:.0f} s; measuring anyway")
            break
        await trio.sleep(PROBE_EVERY)
        if int(elapsed) % 30 < PROBE_EVERY:
            log(f"  {elapsed:.0f} s: build progress {watch.progress or 'not started'}")
    return time.perf_counter() - started


async def run(sizes: list[int], n_queries: int, heap_mb: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="agent-trio-bench-") as data:
        settings = load_settings(agent_data_dir=Path(data), engine_heap_mb=heap_mb)
        watch = BuildWatch()
        engine_log = logging.getLogger("agent_trio.engine")
        engine_log.setLevel(logging.INFO)
        engine_log.addHandler(watch)
        problems = logging.StreamHandler(sys.stderr)
        problems.setLevel(logging.WARNING)
        engine_log.addHandler(problems)
        engine_log.propagate = False
        async with trio.open_nursery() as nursery:
            log("starting the embedded engine")
            info: EngineInfo = await nursery.start(run_embedded_engine, engine_config(settings))
            try:
                return await bench(info, watch, sizes, n_queries)
            finally:
                nursery.cancel_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover


async def bench(info: EngineInfo, watch: BuildWatch, sizes: list[int], n_queries: int) -> list[Row]:
    target = GraphTarget(info.bolt_uri, info.user, info.password, info.database)
    corpus = Corpus.seeded(7)
    queries = [corpus.words(QUERY_WORDS) for _ in range(n_queries)]
    rows: list[Row] = []
    async with (
        trio_asyncio.open_loop() as loop,
        open_graph(target, loop=loop, limiter=trio.CapacityLimiter(4), query_timeout=120) as gw,
        httpx.AsyncClient(timeout=60) as http,
    ):
        store = await open_store(gw, http, info)
        embedder = PrecomputedEmbedder(corpus, n_queries)
        searcher = Searcher(store, embedder)
        have = 0
        for size in sizes:
            log(f"growing the corpus to {size} chunks")
            await grow(store, corpus, have, size)
            rows.append(await measure(searcher, store, embedder, queries, size, "pending", 0.0))
            waited = await wait_for_build(watch, size)
            rows.append(await measure(searcher, store, embedder, queries, size, "built", waited))
            have = size
    return rows


async def open_store(gw: GraphGateway, http: httpx.AsyncClient, info: EngineInfo) -> KnowledgeStore:
    dialect = ArcadeDialect(
        http, http_url=info.http_url, database=info.database, user=info.user, password=info.password
    )
    store = KnowledgeStore(gw, dialect, dimensions=DIMENSIONS)
    await store.ensure_schema()
    return store


def table(rows: list[Row]) -> str:
    lines = [
        "| chunks | index | vector p50 | vector p99 | hybrid p50 | hybrid p99 "
        "| hybrid before p50 | hybrid before p99 | build wait | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        wait = f"{r.waited:.0f} s" if r.state == "built" else "–"
        lines.append(
            f"| {r.size:,} | {r.state} | {r.vector_p50:.1f} ms | {r.vector_p99:.1f} ms "
            f"| {r.hybrid_p50:.1f} ms | {r.hybrid_p99:.1f} ms "
            f"| {r.before_p50:.1f} ms | {r.before_p99:.1f} ms | {wait} | {r.load} |"
        )
    built = {r.size: r.vector_p50 for r in rows if r.state == "built"}
    if len(built) >= 2:
        small, large = min(built), max(built)
        lines.append("")
        lines.append(
            f"Vector p50, built: {large:,} vs {small:,} chunks = "
            f"{built[large] / built[small]:.2f}x (goal: at most 2x)."
        )
    return "\n".join(lines)


DESCRIPTION = """\
The bench starts the embedded engine on a temporary data directory and grows one
corpus to 1,000, 10,000 and 100,000 chunks, written through
`KnowledgeStore.replace_documents` in documents of 100 chunks, five to a
transaction. The data is
synthetic and seeded, not from a model: **random 384-dimensional unit vectors**, and
texts of 40 words drawn from a Zipf distribution whose commonest ranks are English
function words followed by 5,000 made-up words. Queries: a random query vector (the
embedding is precomputed, so its cost is not in the figures) and five words from the
same distribution. `vector` is `Searcher.vector(q, 10)`; `hybrid` is
`Searcher.hybrid(q, 10)` (30 candidates from each search, reciprocal rank fusion,
the two searches at once, no full-text side for a query of common words alone);
*hybrid before* is hybrid as it was before that (`hybrid_before` in the bench: one
search after the other, common words alone searched for), measured in the same run
on the same queries. Each figure is over sequential calls from one client: 30 of
each kind in the *pending* state, 100 of each in the *built* state; *load* is the
load average (1, 5, 15 min) after the measurement.

- *pending*: measured right after the writes. The engine builds its vector index
  graph lazily (on the first query, or after 15 s without writes); until the build
  has caught up, a query also scans the vectors not yet in the graph.
- *built*: measured after the engine logged a completed build over all the vectors
  (the bench follows the engine's log); *build wait* is the time from the end of the
  pending measurement to that report.
"""


def section(rows: Sequence[Row], command: str, seconds: float, load: float) -> str:
    return (
        "## Search latency against corpus size\n\n"
        f"Command: `{command}` ({os.cpu_count()} CPUs; load average {load:.1f} before the "
        f"run). The whole run took {seconds:.0f} s.\n\n"
        f"{DESCRIPTION}\n{table(rows)}\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=100, help="queries per measurement")
    parser.add_argument("--heap-mb", type=int, default=1024, help="engine heap (ENGINE_HEAP_MB)")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if any(s % CHUNKS_PER_DOCUMENT for s in sizes):
        parser.error(f"sizes must be multiples of {CHUNKS_PER_DOCUMENT}")
    started = time.perf_counter()
    load = os.getloadavg()[0]
    rows = trio.run(run, sizes, args.queries, args.heap_mb)
    print(table(rows))
    seconds = time.perf_counter() - started
    log(f"done in {seconds:.0f} s")
    command = ".venv/bin/python bench/search.py" + " ".join(["", *(argv or sys.argv[1:])])
    if args.write:
        write_section("search", section(rows, command.strip(), seconds, load))


if __name__ == "__main__":
    main()
