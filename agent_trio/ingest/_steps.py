"""The steps every document goes through: prepare, check, extract, embed, write.

One document (``Ingestor.ingest``) takes them in order; a run over many files
(``_run.py``) spreads them over the stages of a pipeline. Reading and chunking run
in a worker thread (file I/O, and CPU work that would otherwise stall the event
loop of a serving process).

What is embedded is each chunk's text under its heading path
(:func:`embedding_text`, ``Chunk.context_text`` without saying a heading twice).
The headings name what a chunk is about when its text does not (a section that
says "the founders" under "How Kestrel Labs Began"), which is what a query is
matched against; the stored text stays the exact slice of the document, and the
full-text index sees only that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from agent_trio._errors import (
    GraphConstraintError,
    GraphTransient,
    IngestError,
    UpstreamProtocolError,
)
from agent_trio.document import Chunk, SourceDocument, markdown_headings
from agent_trio.extract import Extraction, Extractor, RuleExtractor
from agent_trio.graph import DocumentVersion, KnowledgeStore, StoredVersion
from agent_trio.ingest._chunker import chunk_text, fit_chunks
from agent_trio.ingest._mapping import (
    DocumentRecords,
    PipelineShape,
    document_records,
    version_hash,
)
from agent_trio.ingest._outcome import DocumentOutcome
from agent_trio.ingest._reader import read_document
from agent_trio.upstream import Embedder

__all__ = ["Prepared", "Steps", "embedding_text"]


def embedding_text(chunk: Chunk) -> str:
    """The chunk's text after its heading path, less the headings the text opens with."""
    path = chunk.heading_path
    said = _opening_headings(chunk.text)
    if said and path[-len(said) :] == said:
        path = path[: -len(said)]
    if not path:
        return chunk.text
    return " > ".join(path) + "\n\n" + chunk.text


def _opening_headings(text: str) -> tuple[str, ...]:
    """The titles of the heading lines that ``text`` starts with."""
    titles: list[str] = []
    position = 0
    for heading in markdown_headings(text):
        if text[position : heading.start].strip():
            break
        titles.append(heading.title)
        position = heading.end
    return tuple(titles)


@dataclass(frozen=True)
class Prepared:
    """A document, its chunks, and the hash its stored version will carry."""

    doc: SourceDocument
    chunks: tuple[Chunk, ...]
    stored_hash: str
    #: the check found no stored version of the document (see ``Steps.write_records``)
    absent: bool = False

    @property
    def texts(self) -> list[str]:
        return [embedding_text(chunk) for chunk in self.chunks]


class Steps:
    """The per-document steps, bound to one store, embedder, extractor and chunking."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        extractor: Extractor,
        *,
        chunk_size: int,
        chunk_overlap: int,
    ) -> None:
        if chunk_size < 1 or chunk_overlap < 0:
            raise ValueError(
                f"chunk_size must be >= 1 and chunk_overlap >= 0, "
                f"got {chunk_size} and {chunk_overlap}"
            )
        self.store = store
        self.embedder = embedder
        self.extractor = extractor
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.shape = PipelineShape(
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            embedder=f"{embedder.provider}/{embedder.model}/{embedder.dimensions}",
            extractor=type(extractor).__name__,
        ).canonical()

    # -- preparing (sync: runs in a worker thread) ---------------------------------
    def prepare(self, doc: SourceDocument) -> Prepared:
        """Chunk ``doc``; ``IngestError`` when it has no text to ingest."""
        chunks = fit_chunks(
            doc.content,
            chunk_text(doc.content, size=self.chunk_size, overlap=self.chunk_overlap),
            lambda chunk: self.embedder.reads_whole(embedding_text(chunk)),
        )
        if not chunks:
            raise IngestError(
                f"{doc.source}: no text to ingest (empty, or nothing but front matter)"
            )
        return Prepared(doc, tuple(chunks), version_hash(doc.content_hash, self.shape))

    def prepare_file(self, path: Path) -> Prepared:
        return self.prepare(read_document(path))

    async def prepare_in_thread(self, doc: SourceDocument) -> Prepared:
        return await trio.to_thread.run_sync(self.prepare, doc)

    async def prepare_file_in_thread(self, path: Path) -> Prepared:
        return await trio.to_thread.run_sync(self.prepare_file, path)

    # -- checking, extracting, embedding, writing --------------------------------
    async def check_each(self, group: Sequence[Prepared]) -> list[DocumentOutcome | Prepared]:
        """For each of ``group``, in one round trip to the store: the outcome
        ``unchanged`` if this very version is stored, else the document to ingest,
        marked ``absent`` if no version of it is stored."""
        stored = await self.store.document_versions([p.doc.document_id for p in group])
        out: list[DocumentOutcome | Prepared] = []
        for prepared in group:
            version = stored.get(prepared.doc.document_id)
            if version is None:
                out.append(dataclasses.replace(prepared, absent=True))
            else:
                out.append(_unchanged(prepared, version) or prepared)
        return out

    async def extract(self, prepared: Prepared) -> Extraction:
        """The document's extraction; the rules' through :meth:`extract_each`, so that a
        document posted alone also goes to a worker process when one is up."""
        found = await self.extract_each([prepared])
        if found is not None:
            (extraction,) = found
            return extraction
        return await self.extractor.extract(prepared.doc, prepared.chunks)

    async def extract_each(self, group: Sequence[Prepared]) -> list[Extraction] | None:
        """The extraction of each of ``group`` in one call, from an extractor that
        takes many documents at once (the rules, which may hand them to a worker
        process); ``None`` from one that takes them one by one (:meth:`extract`)."""
        if not isinstance(self.extractor, RuleExtractor):
            return None
        return await self.extractor.extract_each([(p.doc, p.chunks) for p in group])

    async def embed(self, group: Sequence[Prepared]) -> list[list[list[float]]]:
        """The chunk vectors of each document of ``group``, in one ``embed`` call."""
        texts = [text for prepared in group for text in prepared.texts]
        vectors = await self.embedder.embed(texts)
        if len(vectors) != len(texts):
            raise UpstreamProtocolError(
                f"the embedder returned {len(vectors)} vectors for {len(texts)} texts",
                upstream="embedding",
            )
        out: list[list[list[float]]] = []
        start = 0
        for prepared in group:
            out.append(vectors[start : start + len(prepared.chunks)])
            start += len(prepared.chunks)
        return out

    def records(
        self, prepared: Prepared, vectors: Sequence[Sequence[float]], extraction: Extraction
    ) -> DocumentRecords:
        """What storing this version writes; ``IngestError`` if a value is unusable."""
        return document_records(
            prepared.doc, prepared.chunks, vectors, extraction, stored_hash=prepared.stored_hash
        )

    async def write(
        self, prepared: Prepared, vectors: Sequence[Sequence[float]], extraction: Extraction
    ) -> DocumentOutcome:
        """Store this version of the document, with all its parts, in one transaction.

        A document the check found ``absent`` is written without looking for an old
        version; if one was stored meanwhile (its chunk ids are taken, so that
        transaction changed nothing), it is written again in full.
        """
        records = self.records(prepared, vectors, extraction)
        if prepared.absent:
            try:
                (outcome,) = await self.write_records([(prepared, records)], absent=True)
            except (GraphConstraintError, GraphTransient):
                pass
            else:
                return outcome
        (outcome,) = await self.write_records([(prepared, records)])
        return outcome

    async def write_records(
        self, group: Sequence[tuple[Prepared, DocumentRecords]], *, absent: bool = False
    ) -> list[DocumentOutcome]:
        """Store these document versions in ONE transaction: all of them, or none.

        ``absent``: none of them is stored (``KnowledgeStore.replace_documents``).
        ``IngestError`` (naming the first document) for records that contradict
        each other; nothing was sent then.
        """
        versions = [
            DocumentVersion(r.document, r.chunks, r.entities, r.facts, r.mentions) for _, r in group
        ]
        try:
            await self.store.replace_documents(versions, absent=absent)
        except ValueError as exc:  # records that contradict each other; nothing was sent
            raise IngestError(f"{group[0][0].doc.source}: cannot be stored: {exc}") from exc
        return [
            DocumentOutcome(
                id=records.document.id,
                source=records.document.source,
                status="written",
                chunk_count=len(records.chunks),
                entity_count=len({e.key for e in records.entities}),
                fact_count=len({f.uuid for f in records.facts}),
            )
            for _, records in group
        ]


def _unchanged(prepared: Prepared, stored: StoredVersion | None) -> DocumentOutcome | None:
    if stored is None or stored.content_hash != prepared.stored_hash:
        return None
    return DocumentOutcome(
        id=prepared.doc.document_id,
        source=prepared.doc.source,
        status="unchanged",
        chunk_count=len(prepared.chunks),
        entity_count=stored.entity_count,
        fact_count=stored.fact_count,
    )
