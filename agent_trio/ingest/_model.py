"""The values that flow through ingestion: a read document, its chunks, what was extracted.

All are frozen: a stage returns new values and never edits what it was given.
Identifiers that the graph stores are derived deterministically, so ingesting the
same source twice addresses the same nodes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ENTITY_TYPES",
    "Chunk",
    "Entity",
    "EntityType",
    "Extraction",
    "Fact",
    "SourceDocument",
    "document_id_for",
]

EntityType = Literal["person", "organization", "product", "place", "event", "other"]

#: every value of :data:`EntityType`, in a stable order
ENTITY_TYPES: tuple[EntityType, ...] = (
    "person",
    "organization",
    "product",
    "place",
    "event",
    "other",
)

# Fixed namespace: changing it would give every stored document a new id.
_DOCUMENT_NAMESPACE = uuid.UUID("6f1c2a4e-0d1b-5c7e-9a43-2f8e1b7d5c90")


def document_id_for(source: str) -> str:
    """The stable id of the document read from ``source`` (a UUID5 string)."""
    return str(uuid.uuid5(_DOCUMENT_NAMESPACE, source))


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One document as read: normalised ``content`` (the body, without front matter).

    ``metadata`` holds only JSON-safe values. ``content_hash`` covers content, title
    and metadata, so a changed title or tag is a change too.
    """

    source: str
    title: str
    content: str
    metadata: dict[str, Any] = field(hash=False)
    content_hash: str

    @property
    def document_id(self) -> str:
        """Derived from ``source`` alone: stable across runs and content changes."""
        return document_id_for(self.source)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document's content: ``text == content[start:end]``.

    ``heading_path`` is the chain of Markdown headings the chunk sits under,
    outermost first; it is context for display and embedding, not part of ``text``.
    """

    index: int
    text: str
    token_estimate: int
    heading_path: tuple[str, ...]
    start: int
    end: int

    @property
    def context_text(self) -> str:
        """``text`` preceded by its heading path, for embedding with context."""
        if not self.heading_path:
            return self.text
        return " > ".join(self.heading_path) + "\n\n" + self.text


@dataclass(frozen=True, slots=True)
class Entity:
    """A named thing. ``key`` is the normalised name that identifies it in the graph."""

    name: str
    key: str
    type: EntityType


@dataclass(frozen=True, slots=True)
class Fact:
    """A relationship between two entities, stated by ``sentence`` in chunk ``chunk_index``.

    ``relation`` is a short UPPER_SNAKE verb (``FOUNDED``, ``WORKS_AT``, ``RELATED_TO``).
    ``valid_at`` / ``invalid_at`` are ISO-8601 dates (``YYYY-MM-DD``, UTC) when the
    text dates the fact, else ``None``.
    """

    subject_key: str
    object_key: str
    relation: str
    sentence: str
    valid_at: str | None
    invalid_at: str | None
    chunk_index: int


@dataclass(frozen=True, slots=True)
class Extraction:
    """What an extractor found in one document; facts refer to entities by key."""

    entities: tuple[Entity, ...] = ()
    facts: tuple[Fact, ...] = ()
