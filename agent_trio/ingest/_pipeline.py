"""The ingestion pipeline: documents in, chunks, embeddings, entities and facts stored.

::

    ingestor = Ingestor(store, embedder, RuleExtractor(), chunk_size=1000, chunk_overlap=200)
    outcome = await ingestor.ingest(parse_document("notes/a.md", text))   # one document
    summary = await ingestor.ingest_paths([Path("docs/")], clean=False)   # files and folders

Ingestion is idempotent: a document whose stored version has the same hash (the
content under the same chunking, embedder and extractor, see ``_mapping.py``) is
skipped without embedding or writing; a changed one is replaced, in one
transaction, with nothing of the old version left. How a run over many files is
spread over concurrent stages is described in ``_run.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio

from agent_trio._errors import IngestError
from agent_trio.document import SourceDocument
from agent_trio.extract import Extractor
from agent_trio.graph import KnowledgeStore
from agent_trio.ingest._outcome import DocumentOutcome, IngestSummary, NoProgress, Progress
from agent_trio.ingest._reader import iter_paths
from agent_trio.ingest._run import Stages, embed_workers_for, run_pipeline
from agent_trio.ingest._steps import Steps
from agent_trio.upstream import Embedder

__all__ = ["Ingestor"]

#: documents that may wait, read and chunked, for an embedding worker
READ_AHEAD = 16
#: chunks per embedding call when the embedder does not say its batch size
DEFAULT_BATCH_TEXTS = 32


class Ingestor:
    """Reads, chunks, embeds, extracts and stores documents.

    ``embed_workers``, ``read_ahead`` and ``batch_texts`` shape a run over many
    files (``_run.py``); they are derived from the embedder (its limiter's tokens,
    its batch size) and may be changed before a run.
    """

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        extractor: Extractor,
        *,
        chunk_size: int,
        chunk_overlap: int,
    ) -> None:
        self._steps = Steps(
            store, embedder, extractor, chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )
        self.embed_workers = embed_workers_for(embedder.limiter.total_tokens)
        self.read_ahead = READ_AHEAD
        self.batch_texts = _batch_texts(embedder)
        #: documents the writer may put in one transaction
        self.write_documents = Stages.write_documents

    @property
    def stages(self) -> Stages:
        return Stages(
            self.embed_workers,
            self.read_ahead,
            self.batch_texts,
            write_documents=self.write_documents,
        )

    async def ingest(self, document: SourceDocument) -> DocumentOutcome:
        """Store one document (unless this version is stored already).

        Raises :class:`~agent_trio.IngestError` for a document that cannot be
        ingested (no text); upstream and graph errors propagate as they are.
        """
        steps = self._steps
        (checked,) = await steps.check_each([await steps.prepare_in_thread(document)])
        if isinstance(checked, DocumentOutcome):
            return checked  # unchanged
        prepared = checked
        extraction = await steps.extract(prepared)
        try:
            (vectors,) = await steps.embed([prepared])
        except ValueError as exc:  # the embedder refused a text before sending it
            raise IngestError(f"{document.source}: cannot be embedded: {exc}") from exc
        return await steps.write(prepared, vectors, extraction)

    async def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        clean: bool = False,
        progress: Progress | None = None,
    ) -> IngestSummary:
        """Ingest the files named by ``paths`` (folders are searched); return the totals.

        Raises :class:`~agent_trio.IngestError` before anything is done if a path
        does not exist or names a file of an unsupported type. ``clean`` deletes
        every document first. A document that fails is listed in
        ``IngestSummary.failed`` with its reason; the others go on.
        """
        files = await trio.to_thread.run_sync(iter_paths, list(paths))
        if clean:
            await self._steps.store.delete_all()
        summary = IngestSummary()
        progress = progress or NoProgress()
        progress.started(len(files))
        await run_pipeline(
            self._steps, files, stages=self.stages, summary=summary, progress=progress
        )
        summary.failed.sort()
        return summary


def _batch_texts(embedder: Embedder) -> int:
    """The texts one request of this embedder carries, if it says so."""
    for name in ("batch_size", "inference_batch"):
        value = getattr(embedder, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_BATCH_TEXTS
