"""What extraction finds: entities, and the dated facts that relate them.

All are frozen. Facts refer to entities by key, the graph's own, so the same name
found in any document addresses the same entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ENTITY_TYPES", "Entity", "EntityType", "Extraction", "Fact"]

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
