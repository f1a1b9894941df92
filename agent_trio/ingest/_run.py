"""A run over many files: four stages in one nursery, joined by bounded channels.

::

    read (readers tasks) ──▶ [read_ahead documents] ──▶ check (1 task)
                         ──▶ [read_ahead documents] ──▶ embed (embed_workers tasks)
                         ──▶ [write_room documents] ──▶ write (1 task)

* **read** (``readers`` tasks taking the files in turn): reads and chunks each file
  in a worker thread. Several readers keep the file reading and the chunking
  overlapping.
* **check**: takes a document and whatever else is already waiting (up to
  ``check_documents``) and asks the store for their stored versions in ONE query;
  an unchanged document ends here (if that query fails, each document of the group
  fails with its reason). One with no stored version is marked ``absent``. A query
  per document cost about a quarter of a small document's CPU, the driver's and the
  engine's together.
* **embed**: takes a document and whatever else is already waiting, up to
  ``batch_texts`` chunks, and embeds them in ONE call (small documents share
  requests, which matters under a per-minute request limit) while the extractor
  works on each of them (the rule extractor takes the group in one call, which a
  worker process answers once the extraction workers are up). Several workers run
  at once; the embedder's limiter, not this code, decides how many requests are in
  flight.
* **write**: takes a document and whatever else is already waiting (up to
  ``write_documents`` documents, about ``write_chunks`` chunks) and writes them in
  ONE transaction (``KnowledgeStore.replace_documents``): a transaction costs about
  the same for one document as for sixteen, so a writer that falls behind catches
  up by writing more at a time. A group of ``absent`` documents (none written yet in
  this run) is written without looking for old versions: three statements fewer,
  which is a third of a small transaction. If such a transaction fails, each of its
  documents is written alone, in full, so one document at fault fails only itself,
  and one stored meanwhile by someone else is replaced.

When a stage is slower than the one before it, the channel between them fills and
the earlier stage waits: the number of documents read ahead of the writer is
bounded (:meth:`Stages.max_in_flight`). A document that fails is reported with its
reason and the others go on. Cancelling the run leaves every document either as it
was or fully written, because each one is written whole within a single transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from agent_trio._errors import (
    GraphError,
    IngestError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejected,
)
from agent_trio.extract import Extraction
from agent_trio.ingest._outcome import DocumentOutcome, IngestSummary, Progress
from agent_trio.ingest._reader import source_for
from agent_trio.ingest._steps import Prepared, Steps

__all__ = [
    "PER_DOCUMENT_ERRORS",
    "Stages",
    "embed_workers_for",
    "failure_reason",
    "run_pipeline",
]

#: errors that fail one document, not the run
PER_DOCUMENT_ERRORS = (IngestError, UpstreamError, GraphError)
#: errors of an embedding call that one document's text may have caused
_ONE_MAY_BE_AT_FAULT = (UpstreamRejected, UpstreamProtocolError, ValueError)


@dataclass(frozen=True)
class Stages:
    """How wide the pipeline is. ``max_in_flight`` bounds documents read but not done."""

    embed_workers: int
    read_ahead: int
    batch_texts: int
    write_documents: int = 16
    write_chunks: int = 200
    readers: int = 3
    check_documents: int = 32

    def write_room(self) -> int:
        """Embedded documents that may wait for the writer: enough for a full group."""
        return max(self.embed_workers, self.write_documents)

    def max_in_flight(self) -> int:
        """Documents taken up and not yet finished, at most (each has >= 1 chunk).

        Each of the ``readers`` holds one while it waits; ``read_ahead`` wait for the
        check, which holds a group of at most ``check_documents``, and no more than
        were waiting plus the one it took; ``read_ahead`` wait for a worker; each
        worker holds a group of at most ``batch_texts`` documents, and no more than
        were waiting plus the one it took; ``write_room`` wait for the writer, which
        holds a group of at most ``write_documents`` and may hold one more back for
        the next group.
        """
        workers = self.embed_workers
        checked = min(self.check_documents, self.read_ahead + 1)
        group = min(self.batch_texts, self.read_ahead + 1)
        writer = self.write_documents + 1
        read = self.readers + self.read_ahead + checked
        return read + self.read_ahead + workers * group + self.write_room() + writer


def failure_reason(source: str, exc: Exception) -> str:
    """The reason shown for a failed document; its source is shown beside it."""
    text = str(exc).removeprefix(f"{source}: ")
    if isinstance(exc, GraphError):
        return f"graph database: {text}"
    return text


@dataclass(frozen=True)
class _Embedded:
    prepared: Prepared
    vectors: list[list[float]]
    extraction: Extraction

    def parts(self) -> tuple[Prepared, list[list[float]], Extraction]:
        return self.prepared, self.vectors, self.extraction


class _Run:
    def __init__(
        self, steps: Steps, stages: Stages, summary: IngestSummary, progress: Progress
    ) -> None:
        self.steps = steps
        self.stages = stages
        self.summary = summary
        self.progress = progress
        #: ids written in this run: a file given twice is not absent the second time
        self.written: set[str] = set()

    def finished(self, outcome: DocumentOutcome) -> None:
        self.summary.add(outcome)
        self.progress.document_finished(outcome)

    def failed(self, source: str, exc: Exception) -> None:
        reason = failure_reason(source, exc)
        self.summary.failed.append((source, reason))
        self.progress.document_failed(source, reason)

    # -- stage 1 -------------------------------------------------------------------
    async def read(self, files: Sequence[Path], send: trio.MemorySendChannel[Prepared]) -> None:
        todo = iter(files)
        async with send, trio.open_nursery() as nursery:
            for _ in range(self.stages.readers):
                nursery.start_soon(self._read_from, todo, send.clone())

    async def _read_from(
        self, todo: Iterator[Path], send: trio.MemorySendChannel[Prepared]
    ) -> None:
        async with send:
            for path in todo:
                source = source_for(path)
                self.progress.document_started(source)
                try:
                    prepared = await self.steps.prepare_file_in_thread(path)
                except PER_DOCUMENT_ERRORS as exc:
                    self.failed(source, exc)
                    continue
                await send.send(prepared)

    # -- stage 2 -------------------------------------------------------------------
    async def check(
        self,
        receive: trio.MemoryReceiveChannel[Prepared],
        send: trio.MemorySendChannel[Prepared],
    ) -> None:
        async with receive, send:
            async for first in receive:
                group = _gather(first, receive, self.stages.check_documents, lambda _: 1)
                try:
                    checked = await self.steps.check_each(group)
                except PER_DOCUMENT_ERRORS as exc:
                    for prepared in group:
                        self.failed(prepared.doc.source, exc)
                    continue
                for item in checked:
                    if isinstance(item, DocumentOutcome):
                        self.finished(item)
                    else:
                        await send.send(item)

    # -- stage 3 -------------------------------------------------------------------
    async def embed(
        self,
        receive: trio.MemoryReceiveChannel[Prepared],
        send: trio.MemorySendChannel[_Embedded],
    ) -> None:
        async with receive, send:
            async for first in receive:
                group = _gather(first, receive, self.stages.batch_texts, _chunk_count)
                for item in await self._embed_group(group):
                    await send.send(item)

    async def _embed_group(self, group: list[Prepared]) -> list[_Embedded]:
        vectors: list[list[list[float]] | None] = [None] * len(group)
        extractions: list[Extraction | None] = [None] * len(group)
        failed: set[int] = set()

        def fail(index: int, exc: Exception) -> None:
            if index not in failed:
                failed.add(index)
                self.failed(group[index].doc.source, exc)

        async def extract(index: int) -> None:
            try:
                extractions[index] = await self.steps.extract(group[index])
            except PER_DOCUMENT_ERRORS as exc:
                fail(index, exc)

        async def extract_group() -> None:
            found = await self.steps.extract_each(group)
            if found is not None:
                extractions[:] = found
                return
            async with trio.open_nursery() as nursery:
                for index in range(len(group)):
                    nursery.start_soon(extract, index)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._embed_into, group, vectors, fail)
            nursery.start_soon(extract_group)
        return [
            _Embedded(prepared, found, extraction)
            for index, (prepared, found, extraction) in enumerate(
                zip(group, vectors, extractions, strict=True)
            )
            if index not in failed and found is not None and extraction is not None
        ]

    async def _embed_into(
        self,
        group: list[Prepared],
        vectors: list[list[list[float]] | None],
        fail: Callable[[int, Exception], None],
    ) -> None:
        try:
            vectors[:] = await self.steps.embed(group)
        except _ONE_MAY_BE_AT_FAULT as exc:
            if len(group) == 1:
                fail(0, _as_error(group[0], exc))
                return
            # one document's text may be to blame: find it, the others go on
            for index, prepared in enumerate(group):
                try:
                    (vectors[index],) = await self.steps.embed([prepared])
                except (*_ONE_MAY_BE_AT_FAULT, UpstreamError) as one:
                    fail(index, _as_error(prepared, one))
        except UpstreamError as exc:
            for index in range(len(group)):
                fail(index, exc)

    # -- stage 4 -------------------------------------------------------------------
    async def write(self, receive: trio.MemoryReceiveChannel[_Embedded]) -> None:
        async with receive:
            held: _Embedded | None = None
            while True:
                if held is None:
                    try:
                        held = await receive.receive()
                    except trio.EndOfChannel:
                        return
                group, held = self._gather_written(held, receive)
                await self._write_group(group)

    def _gather_written(
        self, first: _Embedded, receive: trio.MemoryReceiveChannel[_Embedded]
    ) -> tuple[list[_Embedded], _Embedded | None]:
        """``first`` and the documents already waiting, for one transaction.

        At most ``write_documents`` documents and about ``write_chunks`` chunks; a
        document whose id is already in the group (a file given twice) is held for
        the next one.
        """
        group, chunks = [first], len(first.prepared.chunks)
        ids = {first.prepared.doc.document_id}
        while len(group) < self.stages.write_documents and chunks < self.stages.write_chunks:
            try:
                more = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if more.prepared.doc.document_id in ids:
                return group, more
            group.append(more)
            ids.add(more.prepared.doc.document_id)
            chunks += len(more.prepared.chunks)
        return group, None

    async def _write_group(self, group: list[_Embedded]) -> None:
        records = []
        for item in group:
            try:
                records.append((item.prepared, self.steps.records(*item.parts())))
            except PER_DOCUMENT_ERRORS as exc:
                self.failed(item.prepared.doc.source, exc)
        if not records:
            return
        absent = all(p.absent and p.doc.document_id not in self.written for p, _ in records)
        self.written.update(p.doc.document_id for p, _ in records)
        try:
            outcomes = await self.steps.write_records(records, absent=absent)
        except PER_DOCUMENT_ERRORS as exc:
            if len(records) == 1 and not absent:
                self.failed(records[0][0].doc.source, exc)
                return
            # one document may be to blame, or one was stored meanwhile (``absent``):
            # each alone, in full; the others go on
            for prepared, one in records:
                try:
                    (outcome,) = await self.steps.write_records([(prepared, one)])
                except PER_DOCUMENT_ERRORS as alone:
                    self.failed(prepared.doc.source, alone)
                else:
                    self.finished(outcome)
            return
        for outcome in outcomes:
            self.finished(outcome)


def _gather(
    first: Prepared,
    receive: trio.MemoryReceiveChannel[Prepared],
    room: int,
    size: Callable[[Prepared], int],
) -> list[Prepared]:
    """``first`` and the documents already waiting, until their ``size`` reaches ``room``."""
    group, used = [first], size(first)
    while used < room:
        try:
            more = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        group.append(more)
        used += size(more)
    return group


def _chunk_count(prepared: Prepared) -> int:
    return len(prepared.chunks)


def _as_error(prepared: Prepared, exc: Exception) -> Exception:
    if isinstance(exc, ValueError):  # the embedder refused a text before sending it
        return IngestError(f"{prepared.doc.source}: cannot be embedded: {exc}")
    return exc


async def run_pipeline(
    steps: Steps,
    files: Sequence[Path],
    *,
    stages: Stages,
    summary: IngestSummary,
    progress: Progress,
) -> None:
    """Ingest ``files`` through the four stages; results go to ``summary``/``progress``."""
    run = _Run(steps, stages, summary, progress)
    send_read, receive_read = trio.open_memory_channel[Prepared](stages.read_ahead)
    send_prepared, receive_prepared = trio.open_memory_channel[Prepared](stages.read_ahead)
    send_embedded, receive_embedded = trio.open_memory_channel[_Embedded](stages.write_room())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.read, files, send_read)
        nursery.start_soon(run.check, receive_read, send_prepared)
        nursery.start_soon(run.write, receive_embedded)
        async with receive_prepared, send_embedded:
            for _ in range(stages.embed_workers):
                nursery.start_soon(run.embed, receive_prepared.clone(), send_embedded.clone())


def embed_workers_for(total_tokens: float) -> int:
    """One more worker than the embedder has slots (at least 2, at most 16), so a
    request is ready whenever a slot frees while another worker hands on its group."""
    if math.isinf(total_tokens):
        return 16
    return max(2, min(16, math.ceil(total_tokens) + 1))
