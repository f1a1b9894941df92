"""Test data of the knowledge-store tests: small deterministic vectors and documents.

Vectors are 16-dimensional "topic" vectors: each of fifteen topic words has an
axis of its own and every other word adds a little to the sixteenth, so a text
points the way of the topics it names. Enough to tell apart the chunks of a test
without a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from agent_trio.graph import (
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    GraphGateway,
    MentionRecord,
    entity_key,
)

DIMENSIONS = 16
TOPICS = (
    "fox",
    "graph",
    "trio",
    "database",
    "search",
    "vector",
    "cat",
    "rocket",
    "ocean",
    "music",
    "bread",
    "river",
    "mountain",
    "chess",
    "garden",
)
_WORD = re.compile(r"[a-z0-9]+")


def topic_vector(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in _WORD.findall(text.lower()):
        if word in TOPICS:
            vector[TOPICS.index(word)] += 1.0
        else:
            vector[-1] += 0.25
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    if not any(vector):
        vector[-1] = 1.0
    return [v / norm for v in vector]


def axis(i: int) -> list[float]:
    """The unit vector along axis ``i``."""
    return [1.0 if j == i else 0.0 for j in range(DIMENSIONS)]


class TopicEmbedder:
    """Embeds queries with :func:`topic_vector`; counts its calls."""

    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self.calls = 0

    async def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return topic_vector(text)


@dataclass
class Version:
    """One version of a document, as records, and what the graph must hold after it."""

    document: DocumentRecord
    chunks: list[ChunkRecord]
    entities: list[EntityRecord] = field(default_factory=list)
    facts: list[FactRecord] = field(default_factory=list)
    mentions: list[MentionRecord] = field(default_factory=list)

    def args(self) -> tuple[Any, ...]:
        return (self.document, self.chunks, self.entities, self.facts, self.mentions)

    def expected(self) -> Snapshot:
        mentions = {(m.chunk_id, m.entity_key) for m in self.mentions}
        for f in self.facts:
            mentions |= {(f.chunk_id, f.subject_key), (f.chunk_id, f.object_key)}
        return Snapshot(
            documents={(self.document.id, self.document.content_hash)},
            chunks={(c.id, self.document.id) for c in self.chunks},
            entities={e.key for e in self.entities},
            facts={(f.uuid, f.subject_key, f.object_key, self.document.id) for f in self.facts},
            mentions=mentions,
        )


@dataclass
class Snapshot:
    documents: set[tuple[str, str]]
    chunks: set[tuple[str, str]]
    entities: set[str]
    facts: set[tuple[str, str, str, str]]
    mentions: set[tuple[str, str]]


def build_version(doc_id: str, tag: str, n_chunks: int, *, people: int = 3) -> Version:
    """A document of ``n_chunks`` chunks about the topics in turn, with a few facts.

    Every version mentions the shared entity "Acme Corp"; the people are the
    version's own (``Person <tag> <j>``).
    """
    document = DocumentRecord(
        id=doc_id,
        title=f"Title {tag}",
        source=f"notes/{doc_id}.md",
        content=f"The content of {doc_id}, version {tag}.",
        content_hash=f"hash-{doc_id}-{tag}",
        metadata={"version": tag, "tags": ["t1", "t2"]},
    )
    chunks = []
    for i in range(n_chunks):
        text = f"{TOPICS[i % len(TOPICS)]} notes of {tag} number {i}"
        chunks.append(
            ChunkRecord(
                id=f"{doc_id}:{tag}:{i}",
                index=i,
                text=text,
                token_estimate=len(text) // 4,
                embedding=topic_vector(text),
                metadata={"position": i},
            )
        )
    acme = EntityRecord(name="Acme Corp", type="organization")
    persons = [EntityRecord(name=f"Person {tag} {j}", type="person") for j in range(people)]
    facts = [
        FactRecord(
            subject_key=p.key,
            object_key=acme.key,
            relation="WORKS_AT",
            fact=f"{p.name} works at Acme Corp.",
            chunk_id=chunks[j % n_chunks].id,
            valid_at=f"20{10 + j:02d}-01-01",
        )
        for j, p in enumerate(persons)
    ]
    mentions = [MentionRecord(chunks[0].id, acme.key)]
    return Version(document, chunks, [acme, *persons], facts, mentions)


SNAPSHOT_QUERY = """
MATCH (n)
OPTIONAL MATCH (n)-[r]->(m)
RETURN labels(n) AS labels, n.id AS id, n.key AS key, n.content_hash AS hash,
       type(r) AS rel, r.uuid AS uuid, r.document_id AS rdoc, m.id AS mid, m.key AS mkey
"""


async def snapshot(gateway: GraphGateway) -> Snapshot:
    """Everything the knowledge graph holds, read by one statement."""
    snap = Snapshot(set(), set(), set(), set(), set())
    for row in await gateway.query(SNAPSHOT_QUERY):
        label = row["labels"][0]
        if label == "Document":
            snap.documents.add((row["id"], row["hash"]))
        elif label == "Entity":
            snap.entities.add(row["key"])
            if row["rel"] == "RELATES_TO":
                snap.facts.add((row["uuid"], row["key"], row["mkey"], row["rdoc"]))
        elif label == "Chunk":
            if row["rel"] == "PART_OF":
                snap.chunks.add((row["id"], row["mid"]))
            elif row["rel"] == "MENTIONS":
                snap.mentions.add((row["id"], row["mkey"]))
            elif row["rel"] is None:
                snap.chunks.add((row["id"], "<no document>"))
    return snap


def union(*snaps: Snapshot) -> Snapshot:
    out = Snapshot(set(), set(), set(), set(), set())
    for s in snaps:
        out.documents |= s.documents
        out.chunks |= s.chunks
        out.entities |= s.entities
        out.facts |= s.facts
        out.mentions |= s.mentions
    return out


__all__ = [
    "DIMENSIONS",
    "TOPICS",
    "Snapshot",
    "TopicEmbedder",
    "Version",
    "axis",
    "build_version",
    "entity_key",
    "snapshot",
    "topic_vector",
    "union",
]
