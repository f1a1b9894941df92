"""What :class:`KnowledgeStore` reads back: plain frozen values, no driver types,
and the functions that build them from the rows of the store's queries.

Scores are in ``[0, 1]``, higher is better; how each is normalised is said where
it is produced (the dialect for vector and full-text scores).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ChunkHit",
    "DocumentSummary",
    "EntityRow",
    "FactHit",
    "Neighbourhood",
    "StoredChunk",
    "StoredDocument",
    "chunk_hit_from",
    "document_from",
    "entities_from",
    "entity_from",
    "fact_hit_from",
    "load_metadata",
    "summary_from",
]

Record = Mapping[str, Any]


def load_metadata(raw: Any) -> dict[str, Any]:
    """The metadata map stored as a JSON string; ``{}`` for anything else."""
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class DocumentSummary:
    id: str
    title: str
    source: str
    chunk_count: int
    created_at: str
    updated_at: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What identifies the stored version of a document, and what it holds."""

    content_hash: str
    chunk_count: int
    entity_count: int
    fact_count: int


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as read back with its document (:class:`StoredDocument`); no embedding."""

    id: str
    index: int
    text: str
    token_estimate: int
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: str
    title: str
    source: str
    content: str
    content_hash: str
    created_at: str
    updated_at: str
    metadata: Mapping[str, Any]
    chunks: tuple[StoredChunk, ...]

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True, slots=True)
class ChunkHit:
    """A chunk found by a search. ``metadata`` is the document's, overlaid by the chunk's.

    ``score`` is in ``[0, 1]``, higher is better: the store's normalised score, or
    the fused one of a hybrid search; ``raw_score`` is what the engine said.
    """

    chunk_id: str
    document_id: str
    content: str
    score: float
    raw_score: float
    metadata: Mapping[str, Any]
    document_title: str
    document_source: str

    def to_api(self) -> dict[str, Any]:
        """The hit as the HTTP API shows it (API.md): ``raw_score`` is left out."""
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "content": self.content,
            "score": self.score,
            "metadata": dict(self.metadata),
            "document_title": self.document_title,
            "document_source": self.document_source,
        }


@dataclass(frozen=True, slots=True)
class FactHit:
    """A fact: the edge ``source —relation→ target`` with its sentence and provenance.

    ``score`` is in ``[0, 1]`` when the query that found it ranks facts
    (:meth:`KnowledgeStore.facts_for_query`), else ``0.0``. ``via_chunk_id`` is the
    first of the given chunks that led to it (:meth:`KnowledgeStore.facts_for_chunks`).
    """

    uuid: str
    fact: str
    relation: str
    valid_at: str | None
    invalid_at: str | None
    source_node_uuid: str
    target_node_uuid: str
    source_name: str
    target_name: str
    chunk_id: str | None
    document_id: str | None
    score: float = 0.0
    via_chunk_id: str | None = None


@dataclass(frozen=True, slots=True)
class EntityRow:
    id: str
    key: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """An entity, the entities within ``depth`` facts of it, and those facts."""

    entity: EntityRow
    depth: int
    entities: tuple[EntityRow, ...]
    facts: tuple[FactHit, ...]


# -- from the rows the store's queries return -------------------------------------


def summary_from(row: Record) -> DocumentSummary:
    return DocumentSummary(
        id=row["id"],
        title=row.get("title") or "",
        source=row.get("source") or "",
        chunk_count=int(row.get("chunk_count") or 0),
        created_at=row.get("created_at") or "",
        updated_at=row.get("updated_at") or "",
        metadata=load_metadata(row.get("metadata")),
    )


def document_from(row: Record) -> StoredDocument:
    chunks = tuple(
        StoredChunk(
            id=c["id"],
            index=int(c.get("index") or 0),
            text=c.get("text") or "",
            token_estimate=int(c.get("token_estimate") or 0),
            metadata=load_metadata(c.get("metadata")),
        )
        for c in row.get("chunks") or []
        if c
    )
    return StoredDocument(
        id=row["id"],
        title=row.get("title") or "",
        source=row.get("source") or "",
        content=row.get("content") or "",
        content_hash=row.get("content_hash") or "",
        created_at=row.get("created_at") or "",
        updated_at=row.get("updated_at") or "",
        metadata=load_metadata(row.get("metadata")),
        chunks=tuple(sorted(chunks, key=lambda c: c.index)),
    )


def chunk_hit_from(row: Record, score: float) -> ChunkHit:
    metadata: dict[str, Any] = load_metadata(row.get("document_metadata"))
    metadata.update(load_metadata(row.get("chunk_metadata")))
    return ChunkHit(
        chunk_id=row["chunk_id"],
        document_id=row["document_id"],
        content=row.get("content") or "",
        score=score,
        raw_score=float(row["score"]),
        metadata=metadata,
        document_title=row.get("document_title") or "",
        document_source=row.get("document_source") or "",
    )


def fact_hit_from(row: Record, score: float) -> FactHit:
    return FactHit(
        uuid=row["uuid"],
        fact=row.get("fact") or "",
        relation=row.get("relation") or "",
        valid_at=row.get("valid_at"),
        invalid_at=row.get("invalid_at"),
        source_node_uuid=row.get("source_node_uuid") or "",
        target_node_uuid=row.get("target_node_uuid") or "",
        source_name=row.get("source_name") or "",
        target_name=row.get("target_name") or "",
        chunk_id=row.get("chunk_id"),
        document_id=row.get("document_id"),
        score=score,
        via_chunk_id=row.get("via"),
    )


def entity_from(row: Mapping[str, Any]) -> EntityRow:
    return EntityRow(
        id=row.get("id") or "",
        key=row.get("key") or "",
        name=row.get("name") or "",
        type=row.get("type") or "other",
    )


def entities_from(rows: Sequence[Record], centre: EntityRow) -> tuple[EntityRow, ...]:
    """The ends of the facts other than ``centre``, in first-seen order."""
    seen: dict[str, EntityRow] = {}
    for row in rows:
        for end in ("source", "target"):
            uid = row.get(f"{end}_node_uuid") or ""
            if uid and uid != centre.id and uid not in seen:
                seen[uid] = entity_from(
                    {
                        "id": uid,
                        "key": row.get(f"{end}_key"),
                        "name": row.get(f"{end}_name"),
                        "type": row.get(f"{end}_type"),
                    }
                )
    return tuple(seen.values())
