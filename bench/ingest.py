"""Ingestion throughput into the embedded engine: the local model against an instant fake.

    .venv/bin/python bench/ingest.py [--copies 20]

Replicates the sample corpus (``examples/corpus``, 12 documents) ``--copies`` times
into a temporary folder, each copy under its own folder (so its own document ids)
and with one sentence of its own (so its own content), then, on one embedded engine
started here on a temporary data directory, runs ``Ingestor.ingest_paths`` over it
with two embedders, one after the other:

* **local**: ``EMBEDDING_PROVIDER=local``, the shipped all-MiniLM-L6-v2 on the CPU;
* **instant fake**: the HTTP embedder against an in-process OpenAI-compatible
  transport that answers at once with hashed vectors (no rate limit), so what is
  left is our own overhead: reading, chunking, extraction, the pipeline, the writes.

Both use 384 dimensions, the rule extractor and the default chunking (1000/200).
Each starts from an empty graph (``--clean``), then ingests the same folder again,
where every document is unchanged. Measured per embedder: wall time, documents and
chunks per second, and how busy each stage was: the share of the wall time during
which at least one ``embed`` call was running, and the share the single writer
spent inside ``replace_document`` (one transaction per document, one at a time).

Prints progress to stderr, the table to stdout, and writes the Markdown section.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from _report import write_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent_trio import Settings, load_settings
from agent_trio.engine import EngineInfo, run_embedded_engine
from agent_trio.graph import KnowledgeStore
from agent_trio.ingest import Ingestor, IngestSummary, RuleExtractor
from agent_trio.service import ServiceHooks, embedding_config, engine_config, open_service
from agent_trio.upstream import Embedder, open_embedder
from tests.support.fake_embeddings import FakeEmbeddings

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "examples" / "corpus"
DIMENSIONS = 384


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the corpus ----------------------------------------------------------------------


def replicate(target: Path, copies: int) -> int:
    """``copies`` copies of the corpus, each in a folder of its own; the file count."""
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    for n in range(copies):
        folder = target / f"copy-{n:03}"
        folder.mkdir(parents=True)
        for path in files:
            text = path.read_text(encoding="utf-8").rstrip("\n")
            (folder / path.name).write_text(f"{text}\n\nArchive copy {n}.\n", encoding="utf-8")
    return copies * len(files)


# -- the instant fake ----------------------------------------------------------------


def instant_transport() -> httpx.MockTransport:
    return FakeEmbeddings(dimensions=DIMENSIONS).transport()


def open_instant(settings: Settings) -> AbstractAsyncContextManager[Embedder]:
    return open_embedder(embedding_config(settings), transport=instant_transport())


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
    """A knowledge store that records when its replacements ran."""

    busy: Busy

    async def replace_document(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
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
    rerun_seconds: float
    rerun_skipped: int
    workers: int
    batch: int

    def cells(self) -> list[str]:
        s = self.summary
        return [
            self.name,
            f"{s.documents}",
            f"{s.chunks}",
            f"{self.seconds:.1f}",
            f"{s.chunks / self.seconds:.0f}",
            f"{s.documents / self.seconds:.1f}",
            f"{self.embed_busy / self.seconds:.0%}",
            f"{self.write_busy / self.seconds:.0%}",
            f"{self.workers} x {self.batch}",
            f"{self.rerun_skipped / self.rerun_seconds:.0f}",
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
    "workers x batch",
    "unchanged re-run, documents/s",
]


async def measure(
    name: str,
    settings: Settings,
    engine: EngineInfo,
    folder: Path,
    opener: Callable[[Settings], AbstractAsyncContextManager[Embedder]] | None,
) -> Row:
    hooks = ServiceHooks(engine=engine, embedder=opener)
    async with open_service(settings, hooks=hooks) as service:
        embed_busy, write_busy = Busy(), Busy()
        store = TimedStore(service.graph, service.knowledge.dialect, dimensions=DIMENSIONS)
        store.busy = write_busy
        ingestor = Ingestor(
            store,
            TimedEmbedder(service.embedder, embed_busy),  # type: ignore[arg-type]
            RuleExtractor(),
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
        )
        await store.delete_all()
        log(f"{name}: ingesting ({ingestor.embed_workers} embedding workers)")
        started = time.perf_counter()
        summary = await ingestor.ingest_paths([folder])
        seconds = time.perf_counter() - started
        log(f"{name}: {summary.documents} documents, {summary.chunks} chunks in {seconds:.1f} s")
        if summary.failed:
            raise SystemExit(f"{name}: {len(summary.failed)} documents failed: {summary.failed[0]}")
        started = time.perf_counter()
        rerun = await ingestor.ingest_paths([folder])
        rerun_seconds = time.perf_counter() - started
        log(f"{name}: re-run, {rerun.skipped} unchanged in {rerun_seconds:.1f} s")
    return Row(
        name,
        summary,
        seconds,
        embed_busy.seconds(),
        write_busy.seconds(),
        rerun_seconds,
        rerun.skipped,
        ingestor.embed_workers,
        ingestor.batch_texts,
    )


async def run(copies: int) -> tuple[list[Row], int]:
    with tempfile.TemporaryDirectory(prefix="agent-trio-bench-") as tmp:
        folder = Path(tmp) / "corpus"
        count = replicate(folder, copies)
        log(f"corpus: {count} documents in {folder}")
        data = Path(tmp) / "data"
        local = load_settings(agent_data_dir=data, embedding_provider="local", llm_provider="none")
        fake = load_settings(
            agent_data_dir=data,
            embedding_provider="openai",
            embedding_base_url="http://instant.invalid/v1",
            embedding_model="instant-fake",
            embedding_dimensions=DIMENSIONS,
            embedding_rate_limit_per_minute=0,
            llm_provider="none",
        )
        async with trio.open_nursery() as nursery:
            log("starting the embedded engine")
            engine: EngineInfo = await nursery.start(run_embedded_engine, engine_config(local))
            rows = [
                await measure("local (all-MiniLM-L6-v2, CPU)", local, engine, folder, None),
                await measure(
                    "instant fake (HTTP client, no wait)", fake, engine, folder, open_instant
                ),
            ]
            nursery.cancel_scope.cancel()
        shutil.rmtree(folder, ignore_errors=True)
    return rows, count


# -- output --------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}, "
        f"commit {commit}"
    )


def limit_of(row: Row) -> str:
    return "embedding" if row.embed_busy > row.write_busy else "the graph writes"


def bullet(text: str) -> str:
    return textwrap.fill(
        " ".join(text.split()), width=90, initial_indent="- ", subsequent_indent="  "
    )


def section(rows: list[Row], count: int, command: str, load: float) -> str:
    local, fake = rows
    notes = [
        f"""Local model: the limit is {limit_of(local)}. An `embed` call runs
        {local.embed_busy / local.seconds:.0%} of the time
        ({local.summary.chunks / local.embed_busy:.1f} chunks/s while it does), the writer
        {local.write_busy / local.seconds:.0%}; the stages overlap, so a run takes about as
        long as its busiest stage.""",
        f"""Instant fake, i.e. our own overhead: the limit is {limit_of(fake)},
        {fake.summary.chunks / fake.seconds:.0f} chunks/s or
        {fake.summary.documents / fake.seconds:.1f} documents/s. The writer is busy
        {fake.write_busy / fake.seconds:.0%} of the time, about
        {1000 * fake.write_busy / fake.summary.documents:.0f} ms per document: one
        transaction of eight statements over Bolt, one document at a time.""",
        f"""An unchanged re-run reads, chunks and compares hashes only, with no embedding and
        no write: about {fake.rerun_skipped / fake.rerun_seconds:.0f} documents/s.""",
    ]
    intro = f"""The sample corpus replicated to {count} documents (each copy in its own folder,
    with a sentence of its own), ingested into the embedded engine from an empty graph by
    `Ingestor.ingest_paths`, with the rule extractor and the default chunking (1000/200),
    then ingested again with every document unchanged. Run on {machine()}, load average
    {load:.1f} before the run, {time.strftime("%Y-%m-%d")}."""
    legend = """*Embedding busy*: share of the wall time during which at least one `embed` call
    ran. *Writer busy*: share spent inside `replace_document`. *Workers x batch*: embedding
    workers, and chunks per `embed` call at most."""
    return (
        "\n\n".join(
            [
                "## Ingestion throughput",
                f"    {command}",
                textwrap.fill(" ".join(intro.split()), width=90),
                table(rows),
                textwrap.fill(" ".join(legend.split()), width=90),
                "\n".join(bullet(note) for note in notes),
            ]
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20, help="copies of the 12-document corpus")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows, count = trio.run(run, args.copies)
    print(table(rows))
    command = ".venv/bin/python bench/ingest.py" + (
        f" --copies {args.copies}" if args.copies != 20 else ""
    )
    write_section("ingest", section(rows, count, command, load))
    log("wrote its section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
