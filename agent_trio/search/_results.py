"""What a fact search returns. The first fields of each are the HTTP API's (API.md).

A chunk search returns the store's own :class:`~agent_trio.graph.ChunkHit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_trio.graph import EntityRow, FactHit

__all__ = ["GraphResult", "Relationships"]


@dataclass(frozen=True, slots=True)
class GraphResult:
    """A fact: ``source_name —relation→ target_name``, stated by ``fact``.

    ``valid_at`` / ``invalid_at`` are ISO-8601 dates or UTC instants, or ``None``.
    ``score`` in [0, 1] where the search ranks facts, else 0.
    """

    fact: str
    uuid: str
    valid_at: str | None
    invalid_at: str | None
    source_node_uuid: str
    target_node_uuid: str
    relation: str
    source_name: str
    target_name: str
    document_id: str | None
    chunk_id: str | None
    score: float

    @classmethod
    def from_hit(cls, hit: FactHit, score: float | None = None) -> GraphResult:
        return cls(
            fact=hit.fact,
            uuid=hit.uuid,
            valid_at=hit.valid_at,
            invalid_at=hit.invalid_at,
            source_node_uuid=hit.source_node_uuid,
            target_node_uuid=hit.target_node_uuid,
            relation=hit.relation,
            source_name=hit.source_name,
            target_name=hit.target_name,
            document_id=hit.document_id,
            chunk_id=hit.chunk_id,
            score=hit.score if score is None else score,
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "fact": self.fact,
            "uuid": self.uuid,
            "valid_at": self.valid_at,
            "invalid_at": self.invalid_at,
            "source_node_uuid": self.source_node_uuid,
            "target_node_uuid": self.target_node_uuid,
        }


@dataclass(frozen=True, slots=True)
class Relationships:
    """An entity, its neighbours within ``depth`` facts, and those facts."""

    entity: EntityRow
    depth: int
    neighbours: tuple[EntityRow, ...]
    facts: tuple[GraphResult, ...]
