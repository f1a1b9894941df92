"""What :meth:`KnowledgeStore.replace_document` writes: one document version.

The ingestion pipeline maps its own values to these records. They are frozen and
checked on construction, so a malformed value fails here, with a message that names
the field, rather than half-way through a transaction. Identifiers that the graph
keys on are derived deterministically (:func:`entity_id_for`, :func:`fact_uuid_for`),
so writing the same source twice addresses the same nodes and edges.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "ChunkRecord",
    "DocumentRecord",
    "EntityRecord",
    "FactRecord",
    "MentionRecord",
    "entity_id_for",
    "entity_key",
    "fact_uuid_for",
    "iso_moment",
    "utc_now_iso",
]

# Fixed namespace: changing it would give every stored entity and fact a new id.
_NAMESPACE = uuid.UUID("0b7d3c1e-5a0f-5e4b-8c2d-9f6a1e3b7c55")
_KEY_PUNCTUATION = re.compile(r"[^\w\s&+-]")
_POSSESSIVE = re.compile(r"['’]s?$")
LEGAL_FORMS = frozenset(
    [
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "ltd",
        "limited",
        "llc",
        "llp",
        "gmbh",
        "ag",
        "sa",
        "plc",
        "co",
        "bv",
        "nv",
        "oy",
        "ab",
    ]
)


# Names recur, in a document and across documents. A name is at most a chunk's
# sentence or a request's argument (2000 characters), so the cache stays a few MB.
@functools.lru_cache(maxsize=2048)
def entity_key(name: str) -> str:
    """The normalised form of an entity name that identifies it across documents.

    Case, Unicode composition, punctuation, a leading "the", a possessive and a
    trailing legal form (Inc, GmbH, Ltd …) do not matter: ``"Corvid Systems GmbH"``
    and ``"corvid systems"`` have the same key; ``&``, ``+`` and ``-`` are kept.
    """
    text = _POSSESSIVE.sub("", unicodedata.normalize("NFKC", name).casefold().strip())
    words = _KEY_PUNCTUATION.sub(" ", text).split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in LEGAL_FORMS:
        words = words[:-1]
    return " ".join(words)


def entity_id_for(key: str) -> str:
    """The stable UUID of the entity with ``key``."""
    return str(uuid.uuid5(_NAMESPACE, "entity\x00" + key))


def fact_uuid_for(
    chunk_id: str, subject_key: str, relation: str, object_key: str, fact: str
) -> str:
    """The stable UUID of a fact: the same statement in the same chunk, the same id."""
    name = "\x00".join(("fact", chunk_id, subject_key, relation, object_key, fact))
    return str(uuid.uuid5(_NAMESPACE, name))


def utc_now_iso() -> str:
    """Now, as a UTC ISO-8601 string with milliseconds and a ``Z``."""
    return _format_instant(datetime.now(UTC))


def iso_moment(value: str | date | None, *, field_name: str) -> str | None:
    """A date (``YYYY-MM-DD``) or a UTC instant (``…Z``), from ISO-8601 text or a value.

    Dates stay dates; an instant with an offset is converted to UTC, a naive one is
    taken as UTC. Strings of both kinds sort chronologically.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _format_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return _format_instant(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"{field_name} must be an ISO-8601 date or time, got {value!r}") from None


def _format_instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A document version. ``metadata`` must be JSON-serialisable."""

    id: str
    title: str
    source: str
    content: str
    content_hash: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(bool(self.id), "DocumentRecord.id must not be empty")
        _require(bool(self.content_hash), "DocumentRecord.content_hash must not be empty")


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """A chunk to be written, with its id and embedding; checked on construction."""

    id: str
    index: int
    text: str
    token_estimate: int
    embedding: Sequence[float]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(bool(self.id), "ChunkRecord.id must not be empty")
        _require(self.index >= 0, f"ChunkRecord.index must be >= 0, got {self.index}")
        _require(
            all(map(math.isfinite, self.embedding)),
            f"ChunkRecord {self.id}: the embedding holds a NaN or infinity",
        )
        _require(
            any(self.embedding),
            f"ChunkRecord {self.id}: the embedding is all zeros (no cosine direction)",
        )


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """A named thing; ``key`` defaults to :func:`entity_key` of ``name``."""

    name: str
    type: str = "other"
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", entity_key(self.name))
        _require(bool(self.key), f"EntityRecord name {self.name!r} normalises to nothing")

    @property
    def id(self) -> str:
        return entity_id_for(self.key)


@dataclass(frozen=True, slots=True)
class FactRecord:
    """``subject`` —relation→ ``object``, stated by the sentence ``fact`` in ``chunk_id``.

    ``valid_at`` / ``invalid_at`` are normalised by :func:`iso_moment`. ``uuid``
    defaults to :func:`fact_uuid_for`.
    """

    subject_key: str
    object_key: str
    relation: str
    fact: str
    chunk_id: str
    valid_at: str | None = None
    invalid_at: str | None = None
    uuid: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen; normalised once, here
        set_(self, "valid_at", iso_moment(self.valid_at, field_name="FactRecord.valid_at"))
        set_(self, "invalid_at", iso_moment(self.invalid_at, field_name="FactRecord.invalid_at"))
        if not self.uuid:
            parts = (self.chunk_id, self.subject_key, self.relation, self.object_key, self.fact)
            set_(self, "uuid", fact_uuid_for(*parts))


@dataclass(frozen=True, slots=True)
class MentionRecord:
    """Chunk ``chunk_id`` mentions the entity ``entity_key``."""

    chunk_id: str
    entity_key: str
