"""From ingestion's values to the knowledge store's records, and the version hash.

Chunk ids are ``<document id>:<index>``: the same source chunked the same way
addresses the same chunks. A chunk mentions an entity when the entity's name occurs
in its text as whole words (case, Unicode form and runs of white space aside);
the store adds the mentions implied by facts itself.

The hash stored with a document (:func:`version_hash`) covers more than the text:
also the chunking, the embedder and the extractor. A document counts as unchanged
only when all of them are the same, so changing ``CHUNK_SIZE`` or the embedding
model re-ingests a document rather than leaving it chunked or embedded the old way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agent_trio._errors import IngestError
from agent_trio.document import Chunk, SourceDocument
from agent_trio.extract import Entity, Extraction, Fact
from agent_trio.graph import (
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    MentionRecord,
)

__all__ = ["DocumentRecords", "PipelineShape", "chunk_id_for", "document_records", "version_hash"]

log = logging.getLogger("agent_trio.ingest")

#: bump when what is written for the same input changes (ids, metadata, embedded text)
_REVISION = 2  # 2: chunks cut again to fit the embedding model (fit_chunks)


@dataclass(frozen=True)
class PipelineShape:
    """Everything besides the document that decides what ingestion writes."""

    chunk_size: int
    chunk_overlap: int
    embedder: str  # provider/model/dimensions
    extractor: str
    embedded_text: str = "heading path, then text"
    revision: int = _REVISION

    def canonical(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))


def version_hash(content_hash: str, shape: str) -> str:
    """The hash stored with a document: its content hash under this pipeline shape."""
    return hashlib.sha256(f"{shape}\x00{content_hash}".encode()).hexdigest()


def chunk_id_for(document_id: str, index: int) -> str:
    return f"{document_id}:{index}"


@dataclass(frozen=True)
class DocumentRecords:
    """The arguments of one ``KnowledgeStore.replace_document`` call."""

    document: DocumentRecord
    chunks: tuple[ChunkRecord, ...]
    entities: tuple[EntityRecord, ...]
    facts: tuple[FactRecord, ...]
    mentions: tuple[MentionRecord, ...]


def document_records(
    doc: SourceDocument,
    chunks: Sequence[Chunk],
    vectors: Sequence[Sequence[float]],
    extraction: Extraction,
    *,
    stored_hash: str,
) -> DocumentRecords:
    """The records of one document version; ``IngestError`` if a value is unusable."""
    if len(vectors) != len(chunks):
        raise IngestError(f"{doc.source}: {len(vectors)} embeddings for {len(chunks)} chunks")
    ids = [chunk_id_for(doc.document_id, c.index) for c in chunks]
    try:
        entities = tuple(_entity(e) for e in extraction.entities)
        keys = {e.key for e in entities}
        return DocumentRecords(
            document=DocumentRecord(
                id=doc.document_id,
                title=doc.title,
                source=doc.source,
                content=doc.content,
                content_hash=stored_hash,
                metadata=doc.metadata,
            ),
            chunks=tuple(_chunk(i, c, v) for i, c, v in zip(ids, chunks, vectors, strict=True)),
            entities=entities,
            facts=tuple(_facts(doc.source, extraction.facts, ids, keys)),
            mentions=tuple(_mentions(chunks, ids, entities)),
        )
    except ValueError as exc:
        raise IngestError(f"{doc.source}: cannot be stored: {exc}") from exc


def _chunk(chunk_id: str, chunk: Chunk, vector: Sequence[float]) -> ChunkRecord:
    return ChunkRecord(
        id=chunk_id,
        index=chunk.index,
        text=chunk.text,
        token_estimate=chunk.token_estimate,
        embedding=vector,
        metadata={
            "heading_path": list(chunk.heading_path),
            "char_start": chunk.start,
            "char_end": chunk.end,
        },
    )


def _entity(entity: Entity) -> EntityRecord:
    return EntityRecord(name=entity.name, type=entity.type, key=entity.key)


def _facts(
    source: str, facts: Sequence[Fact], chunk_ids: Sequence[str], keys: set[str]
) -> Iterator[FactRecord]:
    """Facts as records; one that refers to nothing the extraction listed is dropped."""
    for fact in facts:
        if not 0 <= fact.chunk_index < len(chunk_ids):
            log.warning("%s: fact dropped: chunk %d does not exist", source, fact.chunk_index)
            continue
        if fact.subject_key not in keys or fact.object_key not in keys:
            log.warning("%s: fact dropped: it names an entity not extracted", source)
            continue
        yield FactRecord(
            subject_key=fact.subject_key,
            object_key=fact.object_key,
            relation=fact.relation,
            fact=fact.sentence,
            chunk_id=chunk_ids[fact.chunk_index],
            valid_at=fact.valid_at,
            invalid_at=fact.invalid_at,
        )


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _mentions(
    chunks: Sequence[Chunk], chunk_ids: Sequence[str], entities: Sequence[EntityRecord]
) -> Iterator[MentionRecord]:
    texts = [_fold(chunk.text) for chunk in chunks]
    for entity in entities:
        needle = _fold(entity.name)
        if not needle:
            continue
        for chunk_id, text in zip(chunk_ids, texts, strict=True):
            if _occurs(text, needle):
                yield MentionRecord(chunk_id, entity.key)


def _occurs(text: str, needle: str) -> bool:
    """Whether ``needle`` occurs in ``text`` with no letter or digit right beside it."""
    start = text.find(needle)
    while start >= 0:
        end = start + len(needle)
        before_ok = start == 0 or not text[start - 1].isalnum()
        after_ok = end == len(text) or not text[end].isalnum()
        if before_ok and after_ok:
            return True
        start = text.find(needle, start + 1)
    return False
