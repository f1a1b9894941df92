"""Ingestion throughput into the embedded engine: the local model, an instant fake, a slow API.

    .venv/bin/python bench/ingest.py [--warm-up 1200] [--settle-rounds 12] [--copies 20]
                                     [--instant 400] [--slow 40] [--rounds 3] [--no-local]

Replicates the sample corpus (``examples/corpus``, 12 documents) into temporary
folders, each copy under its own folder (so its own document ids) and with one
sentence of its own (so its own content), then, on one embedded engine started
here on a temporary data directory, runs ``Ingestor.ingest_paths`` with three
embedders, one after the other, after a warm-up:

* **warm-up**: the instant fake (below) over ``--warm-up`` documents of their own, on
  the engine just started: the figure for a freshly started engine. The engine is a
  JVM, and its optimising compiler (C2) has more than a thousand methods to compile:
  on two shared cores it is busy for a minute or two, taking most of the engine's CPU
  meanwhile. So the warm-up documents are then ingested again (at most
  ``--settle-rounds`` times) until the compilers' threads use under 15 % of a core;
  the rows after it are the engine warm, as a service that has run for a while has
  it. Each row says how much of the engine's CPU went to compiling;
* **instant fake**: the HTTP embedder against an in-process OpenAI-compatible
  transport that answers at once (no rate limit), so what is left is our own
  overhead: reading, chunking, extraction, the pipeline, decoding the answers, the
  writes; over ``--instant`` documents. The API's own work is not ours, and in this
  process it would be: each text gets one of 64 fixed vectors (picked by a checksum of
  the text), encoded as JSON once, so an answer is a string join. Decoding it (the
  client's ``json.loads`` of 384 floats a text) is ours and is measured;
* **longer documents**: the instant fake again, over ``--instant`` documents of
  4.75 chunks each instead of 3.25 (each corpus file followed by the first paragraphs
  of the next), the shape of issue 9's measurement (~4.7): per-document costs weigh
  less on chunks per second;
* **without extraction workers**: the longer documents again, the rule extractor
  working in this process (as before the extraction workers), in the same rounds:
  the workers' gain as a ratio of one run;
* **50 ms API**: the same transport answering after 50 ms, with
  ``EMBEDDING_BATCH_SIZE=1`` and ``EMBEDDING_MAX_CONCURRENCY=4``, over ``--slow``
  documents: *allowance used* is the time the requests took (count x 50 ms) over
  the time the run had for them (4 slots x wall time);
* **local**, last (after the write path below): ``EMBEDDING_PROVIDER=local``, the
  shipped all-MiniLM-L6-v2 on the CPU, over ``--copies`` copies. A service with an API
  embedder never loads the model; in this process, loading it made what ran after it
  slower (our CPU per document with the instant fake: 8.0 ms before, 10.7 ms after).

Then the write path alone (``KnowledgeStore.replace_documents``): the records of
the instant run's first documents written again, one after another, in
transactions of 1, 4 and 16 documents into an emptied graph, then once more in 16s
over the versions just written (replacing them), timing each transaction and the CPU time
of this process's thread meanwhile (building the statements, the driver packing
and unpacking them: ours); the rest is waiting for the engine (and loopback).

The instant, longer and 50 ms rows are measured ``--rounds`` times, interleaved (one
round of each, then the next), and each shows its round of median wall time with the
figures of every round: one run of a few seconds on two shared cores varied from 324
to 480 chunks/s with nothing changed.

All use 384 dimensions, the rule extractor and the default chunking (1000/200).
Each starts from an empty graph (``--clean``), then ingests the same folder again,
where every document is unchanged. Measured per embedder: wall time, documents and
chunks per second, and how busy each stage was: the share of the wall time during
which at least one ``embed`` call was running, and the share the single writer
spent inside ``replace_documents``; and the CPU time per document of this process
(all its threads) with its extraction worker processes, and of the engine (its JVM,
from /proc), which share the machine.

The rule extractor has extraction workers, opened once for all rows as a service
opens them once (``open_extraction_workers``, the service's defaults): the warm-up
row starts them (its first documents are extracted in this process meanwhile), and
they stay up for the rows after it.

Prints progress to stderr, the table to stdout, and writes the Markdown section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from _report import write_section
from _server import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent_trio import Settings, load_settings
from agent_trio.engine import EngineInfo, run_embedded_engine
from agent_trio.extract import ExtractionWorkers, RuleExtractor, open_extraction_workers
from agent_trio.graph import KnowledgeStore
from agent_trio.ingest import Ingestor, IngestSummary
from agent_trio.ingest._steps import Steps
from agent_trio.service import ServiceHooks, embedding_config, engine_config, open_service
from agent_trio.upstream import Embedder, open_embedder
from tests.support.fake_embeddings import hashed_vector

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "examples" / "corpus"
DIMENSIONS = 384
#: characters of the next corpus file appended to each longer document
ADDED = 250


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the corpus ----------------------------------------------------------------------


def replicate(target: Path, documents: int) -> int:
    """``documents`` files: copies of the corpus, each in a folder of its own."""
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    for i in range(documents):
        n, path = divmod(i, len(files))
        folder = target / f"copy-{n:03}"
        folder.mkdir(parents=True, exist_ok=True)
        text = files[path].read_text(encoding="utf-8").rstrip("\n")
        (folder / files[path].name).write_text(f"{text}\n\nArchive copy {n}.\n", encoding="utf-8")
    return documents


def replicate_longer(target: Path, documents: int, added: int = ADDED) -> int:
    """``documents`` longer files: each corpus file followed by the first paragraphs
    of the next one, until they reach ``added`` characters: 4.75 chunks a document,
    the shape of issue 9's measurement (~4.7), where the corpus files make 3.25."""
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    texts = [f.read_text(encoding="utf-8").rstrip("\n") for f in files]
    for i in range(documents):
        n, path = divmod(i, len(files))
        folder = target / f"copy-{n:03}"
        folder.mkdir(parents=True, exist_ok=True)
        more: list[str] = []
        for block in _body(texts[(path + 1) % len(texts)]).split("\n\n"):
            if sum(map(len, more)) >= added:
                break
            more.append(block)
        text = texts[path] + "\n\n" + "\n\n".join(more) + f"\n\nArchive copy {n}.\n"
        (folder / files[path].name).write_text(text, encoding="utf-8")
    return documents


def _body(text: str) -> str:
    """``text`` without its front matter, if it has any."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end >= 0:
            return text[end + 5 :].strip("\n")
    return text


# -- the instant fake ----------------------------------------------------------------


@dataclass
class InstantApi:
    """An OpenAI-compatible embeddings API whose answers cost next to nothing here."""

    dimensions: int = DIMENSIONS
    latency: float = 0.0
    #: the number of texts of each request
    requests: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._encoded = [
            json.dumps(hashed_vector(f"vector {n}", self.dimensions)) for n in range(64)
        ]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        given = json.loads(request.content)["input"]
        texts = given if isinstance(given, list) else [given]
        self.requests.append(len(texts))
        if self.latency:
            await trio.sleep(self.latency)
        data = ",".join(
            f'{{"object":"embedding","index":{i},'
            f'"embedding":{self._encoded[zlib.crc32(text.encode()) % 64]}}}'
            for i, text in enumerate(texts)
        )
        body = f'{{"object":"list","data":[{data}],"model":"instant","usage":{{}}}}'
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=body.encode()
        )


def opener(fake: InstantApi) -> Callable[[Settings], AbstractAsyncContextManager[Embedder]]:
    """An embedder opener on ``fake``, the in-process OpenAI-compatible API."""

    def open_api(settings: Settings) -> AbstractAsyncContextManager[Embedder]:
        return open_embedder(embedding_config(settings), transport=fake.transport())

    return open_api


# -- instruments ---------------------------------------------------------------------


@dataclass
class Busy:
    """Intervals during which something ran; overlapping ones count once."""

    intervals: list[tuple[float, float]] = field(default_factory=list)

    def seconds(self) -> float:
        total, end = 0.0, -math.inf
        for start, stop in sorted(self.intervals):
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total


class TimedEmbedder:
    """An embedder that records when its ``embed`` calls ran."""

    def __init__(self, inner: Embedder, busy: Busy) -> None:
        self._inner = inner
        self._busy = busy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return await self._inner.embed(texts)
        finally:
            self._busy.intervals.append((started, time.perf_counter()))


class TimedStore(KnowledgeStore):
    """A knowledge store that records when its write transactions ran."""

    busy: Busy
    transactions: int = 0

    async def replace_documents(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        self.transactions += 1
        try:
            await super().replace_documents(*args, **kwargs)
        finally:
            self.busy.intervals.append((started, time.perf_counter()))

    if not hasattr(KnowledgeStore, "replace_documents"):  # an older version, for comparison

        async def replace_document(self, *args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            self.transactions += 1
            try:
                await super().replace_document(*args, **kwargs)
            finally:
                self.busy.intervals.append((started, time.perf_counter()))


# -- one variant ---------------------------------------------------------------------


@dataclass
class Row:
    name: str
    summary: IngestSummary
    seconds: float
    embed_busy: float
    write_busy: float
    transactions: int
    rerun_seconds: float
    rerun_skipped: int
    workers: int
    batch: int
    requests: int
    load: str
    cpu_ours: float
    cpu_engine: float
    cpu_compiling: float
    #: every round measured, in order, this one among them (see ``median``)
    rounds: list[Row] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.summary.chunks / self.seconds

    @property
    def allowance(self) -> float:
        """Of the 50 ms API's four slots: the share that its requests used."""
        return self.requests * SLOW / (4 * self.seconds)

    def cells(self) -> list[str]:
        s = self.summary
        per_document = 1000 / max(1, s.documents)
        return [
            self.name,
            f"{s.documents}",
            f"{s.chunks}",
            f"{self.seconds:.1f}",
            f"{self.rate:.0f}",
            f"{s.documents / self.seconds:.1f}",
            f"{self.embed_busy / self.seconds:.0%}",
            f"{self.write_busy / self.seconds:.0%}",
            f"{s.documents / max(1, self.transactions):.1f}",
            f"{self.workers} x {self.batch}",
            f"{self.rerun_skipped / self.rerun_seconds:.0f}",
            f"{self.cpu_ours * per_document:.1f} / {self.cpu_engine * per_document:.1f} ms",
            f"{self.cpu_compiling * per_document:.1f} ms",
            self.load,
        ]


HEADER = [
    "embedder",
    "documents",
    "chunks",
    "seconds",
    "chunks/s",
    "documents/s",
    "embedding busy",
    "writer busy",
    "documents per transaction",
    "workers x batch",
    "unchanged re-run, documents/s",
    "CPU per document, ours / engine",
    "of which the engine compiling",
    "load (1, 5, 15 min)",
]


def cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_cpu(pid: int) -> float:
    """The CPU seconds (user + system) the engine's process has used so far."""
    return cpu_seconds(Path(f"/proc/{pid}/stat"))


def compiler_cpu(pid: int) -> float:
    """The CPU seconds the engine's JIT compiler threads (C1 and C2) have used so far
    (threads that ended are not counted: the JVM stops idle compiler threads)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if task.joinpath("comm").read_text().startswith(("C1 Compiler", "C2 Compiler")):
                total += cpu_seconds(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
    return total


def workers_cpu(engine: int) -> float:
    """The CPU seconds used so far by this process's children other than the engine:
    the extraction workers (a worker that exited is not counted: they are started
    once, before the rows that count, and stay up between rows)."""
    total = 0.0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            if int(pid) != engine:
                try:
                    total += cpu_seconds(Path(f"/proc/{pid}/stat"))
                except OSError:  # it exited meanwhile
                    continue
    return total


def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Variant:
    name: str
    settings: Settings
    folder: Path
    opener: Callable[[Settings], AbstractAsyncContextManager[Embedder]] | None
    fake: InstantApi = field(default_factory=InstantApi)
    #: the rule extractor hands documents to the extraction workers (else extracts here)
    extraction_workers: bool = True


async def measure(
    variant: Variant, engine: EngineInfo, workers: ExtractionWorkers
) -> tuple[Row, list[Any]]:
    """Ingest the variant's folder from an empty graph, then again; the row, and the
    records of the first documents (for the write-path measurement). The rule
    extractor uses ``workers``, opened once for every row, as a service's are."""
    name, settings = variant.name, variant.settings
    hooks = ServiceHooks(engine=engine, embedder=variant.opener)
    async with open_service(settings, hooks=hooks) as service:
        embed_busy, write_busy = Busy(), Busy()
        store = TimedStore(service.graph, service.knowledge.dialect, dimensions=DIMENSIONS)
        store.busy = write_busy
        ingestor = Ingestor(
            store,
            TimedEmbedder(service.embedder, embed_busy),  # type: ignore[arg-type]
            RuleExtractor(workers if variant.extraction_workers else None),
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
        )
        await store.delete_all()
        log(f"{name}: ingesting ({ingestor.embed_workers} embedding workers)")
        variant.fake.requests.clear()
        started, cpu, cpu_engine = time.perf_counter(), time.process_time(), engine_cpu(engine.pid)
        cpu += workers_cpu(engine.pid)
        compiling = compiler_cpu(engine.pid)
        summary = await ingestor.ingest_paths([variant.folder])
        seconds = time.perf_counter() - started
        cpu = time.process_time() + workers_cpu(engine.pid) - cpu
        cpu_engine = engine_cpu(engine.pid) - cpu_engine
        compiling = compiler_cpu(engine.pid) - compiling
        load = uptime()
        requests = len(variant.fake.requests)
        log(f"{name}: {summary.documents} documents, {summary.chunks} chunks in {seconds:.1f} s")
        if summary.failed:
            raise SystemExit(f"{name}: {len(summary.failed)} documents failed: {summary.failed[0]}")
        started = time.perf_counter()
        rerun = await ingestor.ingest_paths([variant.folder])
        rerun_seconds = time.perf_counter() - started
        log(f"{name}: re-run, {rerun.skipped} unchanged in {rerun_seconds:.1f} s")
        row = Row(
            name,
            summary,
            seconds,
            embed_busy.seconds(),
            write_busy.seconds(),
            store.transactions,
            rerun_seconds,
            rerun.skipped,
            ingestor.embed_workers,
            ingestor.batch_texts,
            requests,
            load,
            cpu,
            cpu_engine,
            compiling,
        )
        return row, []


# -- the write path alone ------------------------------------------------------------


@dataclass
class WriteRow:
    group: str
    documents: int
    chunks: int
    wall_ms: float
    ours_ms: float
    load: str

    def cells(self) -> list[str]:
        engine = self.wall_ms - self.ours_ms
        return [
            f"{self.group}",
            f"{self.documents}",
            f"{self.wall_ms / self.documents:.1f} ms",
            f"{self.ours_ms / self.documents:.1f} ms",
            f"{engine / self.documents:.1f} ms",
            f"{1000 * self.chunks / self.wall_ms:.0f}",
            self.load,
        ]


WRITE_HEADER = [
    "documents per transaction",
    "documents",
    "per document",
    "ours (CPU of this thread)",
    "engine (waiting)",
    "chunks/s",
    "load (1, 5, 15 min)",
]


async def write_path(settings: Settings, engine: EngineInfo, folder: Path) -> list[WriteRow]:
    hooks = ServiceHooks(engine=engine, embedder=opener(InstantApi()))
    async with open_service(settings, hooks=hooks) as service:
        steps = Steps(
            service.knowledge,
            service.embedder,
            RuleExtractor(),
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
        )
        files = sorted(await trio.to_thread.run_sync(lambda: list(folder.rglob("*.md"))))[:96]
        records = []
        for path in files:
            prepared = await steps.prepare_file_in_thread(path)
            (vectors,) = await steps.embed([prepared])
            records.append(
                (prepared, steps.records(prepared, vectors, await steps.extract(prepared)))
            )
        chunks = sum(len(r.chunks) for _, r in records)
        rows = []
        for group, label in ((1, "1"), (4, "4"), (16, "16"), (16, "16, replacing")):
            if label != "16, replacing":  # the last one replaces the versions just written
                await service.knowledge.delete_all()
            wall, cpu = 0.0, 0.0
            for start in range(0, len(records), group):
                began, began_cpu = time.perf_counter(), time.thread_time()
                await steps.write_records(records[start : start + group])
                wall += time.perf_counter() - began
                cpu += time.thread_time() - began_cpu
            rows.append(WriteRow(label, len(records), chunks, 1000 * wall, 1000 * cpu, uptime()))
            log(f"write path, {group} per transaction: {rows[-1].cells()}")
        return rows


@dataclass
class Settled:
    """How the engine's compilers were let finish after the warm-up."""

    rounds: int = 0
    seconds: float = 0.0
    #: the compilers' CPU over the wall time of the last round (1.0: a core)
    share: float = float("nan")

    def sentence(self) -> str:
        if not self.rounds:
            return "the engine's compilers were not waited for."
        done = "until" if self.share < SETTLED else "and still not"
        return (
            f"then the warm-up documents were ingested again, {self.rounds} times "
            f"({self.seconds:.0f} s), {done} the engine's compilers used under "
            f"{SETTLED:.0%} of a core ({self.share:.0%} in the last)."
        )


async def settle(
    variant: Variant, engine: EngineInfo, workers: ExtractionWorkers, rounds: int
) -> Settled:
    """Ingest the warm-up documents again until the engine's JIT compilers are mostly
    idle (at most ``rounds`` times).

    HotSpot's optimising compiler (C2, one thread here) has more than a thousand of
    the engine's methods to compile; on two shared cores it is busy for a minute or two
    after start, and meanwhile it takes most of the engine's CPU (3.5 to 4 of 5 s
    while 400 documents were ingested after a warm-up of 1200, 3.7 of 5 s after 3600).
    Measured before it is done, the rows below would not be the warm engine they claim.
    """
    out = Settled()
    while out.rounds < rounds and not out.share < SETTLED:
        began, compiling = time.perf_counter(), compiler_cpu(engine.pid)
        await measure(variant, engine, workers)
        seconds = time.perf_counter() - began
        out = Settled(
            out.rounds + 1,
            out.seconds + seconds,
            (compiler_cpu(engine.pid) - compiling) / seconds,
        )
        log(f"settling: round {out.rounds}, the compilers used {out.share:.0%} of a core")
    return out


async def run(args: argparse.Namespace) -> tuple[list[Row], list[WriteRow], Settled]:
    with tempfile.TemporaryDirectory(prefix="agent-trio-bench-") as tmp:
        folders = {}
        for name, documents in (
            ("warm-up", args.warm_up),
            ("local", 12 * args.copies),
            ("instant", args.instant),
            ("longer", args.instant),
            ("slow", args.slow),
        ):
            folders[name] = Path(tmp) / name
            (replicate_longer if name == "longer" else replicate)(folders[name], documents)
        data = Path(tmp) / "data"
        base: dict[str, Any] = {"agent_data_dir": data, "llm_provider": "none"}
        local = load_settings(**base, embedding_provider="local")
        api: dict[str, Any] = {
            **base,
            "embedding_provider": "openai",
            "embedding_base_url": "http://instant.invalid/v1",
            "embedding_model": "instant-fake",
            "embedding_dimensions": DIMENSIONS,
            "embedding_rate_limit_per_minute": 0,
        }
        instant = load_settings(**api)
        slow = load_settings(**api, embedding_batch_size=1, embedding_max_concurrency=4)
        variants = [
            Variant("instant fake (HTTP client, no wait)", instant, folders["instant"], None),
            Variant(LONGER, instant, folders["longer"], None),
            Variant(IN_PROCESS, instant, folders["longer"], None, extraction_workers=False),
            Variant("50 ms API, batch 1, concurrency 4", slow, folders["slow"], None),
        ]
        variants[-1].fake.latency = SLOW
        if args.warm_up:
            variants.insert(0, Variant(WARM_UP, instant, folders["warm-up"], None))
        for variant in variants:
            variant.opener = opener(variant.fake)
        settled = Settled()
        async with open_extraction_workers() as workers, trio.open_nursery() as nursery:
            log("starting the embedded engine")
            engine: EngineInfo = await nursery.start(run_embedded_engine, engine_config(local))
            rows = []
            if variants[0].name == WARM_UP:
                warm_up = variants.pop(0)
                rows.append((await measure(warm_up, engine, workers))[0])
                settled = await settle(warm_up, engine, workers, args.settle_rounds)
            rounds: dict[str, list[Row]] = {variant.name: [] for variant in variants}
            for number in range(args.rounds):  # interleaved: drift weighs on each alike
                for variant in variants:
                    log(f"round {number + 1} of {args.rounds}")
                    rounds[variant.name].append((await measure(variant, engine, workers))[0])
            rows += [median(rounds[variant.name]) for variant in variants]
            writes = []
            if hasattr(KnowledgeStore, "replace_documents"):
                writes = await write_path(instant, engine, folders["instant"])
            if args.local:  # last: loading the model (torch) slows what runs after it
                local_variant = Variant(LOCAL, local, folders["local"], None)
                rows.append((await measure(local_variant, engine, workers))[0])
            nursery.cancel_scope.cancel()
    return rows, writes, settled


def median(rounds: list[Row]) -> Row:
    """The round of median wall time (of an even number, the slower middle one), with
    every round attached."""
    row = sorted(rounds, key=lambda r: r.seconds)[len(rounds) // 2]
    row.rounds = rounds
    return row


def medians(row: Row) -> str:
    if len(row.rounds) < 2:
        return ""
    return f""" The instant and 50 ms rows were each measured {len(row.rounds)} times,
    interleaved (each after the others, round after round), each round from an empty
    graph; a row shows its round of median wall time. The first row and the local
    model's were measured once."""


def each_round(row: Row, figure: Callable[[Row], str]) -> str:
    if len(row.rounds) < 2:
        return ""
    return f" (median of {len(row.rounds)} rounds: {', '.join(map(figure, row.rounds))})"


# -- output --------------------------------------------------------------------------

SLOW = 0.05
#: the engine's compilers count as done below this share of a core
SETTLED = 0.15
WARM_UP = "instant fake, engine just started (the warm-up)"
LOCAL = "local (all-MiniLM-L6-v2, CPU)"
LONGER = "longer documents, instant fake (as above)"
IN_PROCESS = "without extraction workers: the longer documents, extracted in this process"


def table(header: list[str], rows: Sequence[Row | WriteRow]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=90)


def section(rows: list[Row], writes: list[WriteRow], settled: Settled, command: str) -> str:
    by_name = {row.name.split(" ")[0]: row for row in rows if row.name != WARM_UP}
    instant, longer, slow = by_name["instant"], by_name["longer"], by_name["50"]
    here = by_name["without"]

    def rate(row: Row) -> str:
        return f"{row.rate:.0f}"

    intro = f"""Copies of the sample corpus (each copy in its own folder, with a sentence of
    its own), ingested into the embedded engine from an empty graph by
    `Ingestor.ingest_paths`, with the rule extractor and the default chunking (1000/200),
    then ingested again with every document unchanged. Wall time from the call to its
    return (the engine and the service were open before). Run on {machine()},
    {time.strftime("%Y-%m-%d")}; *load* is the load average right after each run. The
    vector index is pending throughout (the engine builds its graph after 15 s without
    writes); inserts do not wait for it. The engine is a JVM: the first row was measured
    on the engine just started; {settled.sentence()} The other rows were measured after
    that (warm, as in a service that has run for a while). The engine and this process
    share the machine's two cores: with an instant API, their CPU per document together
    bounds the rate.{medians(instant)}"""
    legend = """*Embedding busy*: share of the wall time during which at least one `embed` call
    ran. *Writer busy*: share spent inside `replace_documents` (the write transactions).
    *Workers x batch*: embedding workers, and chunks per `embed` call at most."""
    goals = [
        f"""**Goal: ≥ 500 chunks/s with the instant API.** Measured: {instant.rate:.0f}
        chunks/s{each_round(instant, rate)}
        ({instant.summary.chunks / instant.summary.documents:.2f} chunks per document),
        load {instant.load}. Issue 9 measured it on 400 small documents of ~4.7 chunks;
        documents of that shape (each corpus file followed by the first paragraphs of the
        next, {longer.summary.chunks / longer.summary.documents:.2f} chunks per document):
        {longer.rate:.0f} chunks/s{each_round(longer, rate)}, load {longer.load}. The same
        documents in the same rounds with the rule extractor in this process (no
        extraction workers): {here.rate:.0f} chunks/s{each_round(here, rate)}; with the
        workers {longer.rate / here.rate:.2f} times as fast.""",
        f"""**Goal: ≥ 0.9 of the concurrency allowance used with the 50 ms API.** Measured:
        {slow.requests} requests x 50 ms / (4 slots x {slow.seconds:.2f} s) =
        **{slow.allowance:.2f}**{each_round(slow, lambda r: f"{r.allowance:.2f}")},
        load {slow.load}.""",
    ]
    write_intro = f"""The write path alone: the records of {writes[0].documents} of the
    instant run's documents ({writes[0].chunks} chunks, 384-dimensional vectors) written
    again into an emptied graph, one transaction after another, nothing else running; the
    last row writes them once more over the versions just written (replacing each, its
    old facts, chunks and orphaned entities deleted first).
    *Ours* is the CPU time of this process's one thread during the transactions (building
    the statements, the driver packing the vectors and reading the answers); *engine* is
    the rest of the wall time, spent waiting for the engine (a JVM on the other core) and
    loopback."""
    return (
        "\n\n".join(
            [
                "## Ingestion throughput",
                f"    {command}",
                paragraph(intro),
                table(HEADER, rows),
                paragraph(legend),
                *(paragraph(goal) for goal in goals),
                "### The write path",
                paragraph(write_intro),
                table(WRITE_HEADER, writes),
            ]
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--warm-up", type=int, default=1200, help="documents for the engine's warm-up (0: none)"
    )
    parser.add_argument(
        "--settle-rounds",
        type=int,
        default=12,
        help="at most this many more runs of the warm-up, until the engine's compilers idle",
    )
    parser.add_argument("--copies", type=int, default=20, help="local: copies of the corpus")
    parser.add_argument("--instant", type=int, default=400, help="instant fake: documents")
    parser.add_argument("--slow", type=int, default=40, help="50 ms API: documents")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each measured row; the median is shown"
    )
    parser.add_argument("--no-local", dest="local", action="store_false")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rows, writes, settled = trio.run(run, args)
    print(table(HEADER, rows))
    if not writes:
        return
    print(table(WRITE_HEADER, writes))
    command = ".venv/bin/python bench/ingest.py " + " ".join(argv or sys.argv[1:])
    text = section(rows, writes, settled, command.strip())
    print(text)
    if args.write:
        write_section("ingest", text)
        log("wrote its section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
