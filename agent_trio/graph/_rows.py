"""What :class:`KnowledgeStore` reads back: plain frozen values, no driver types.

Scores are in ``[0, 1]``, higher is better; how each is normalised is said where
it is produced (the dialect for vector and full-text scores).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    "load_metadata",
]


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
class StoredChunk:
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

    ``score`` is normalised to ``[0, 1]``; ``raw_score`` is what the engine said.
    """

    chunk_id: str
    document_id: str
    content: str
    score: float
    raw_score: float
    metadata: Mapping[str, Any]
    document_title: str
    document_source: str


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
