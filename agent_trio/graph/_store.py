"""The knowledge store: documents, chunks, entities and facts in the graph.

:class:`KnowledgeStore` is the only code that knows the knowledge graph's Cypher
(``_cypher.py``); what differs between engines it asks its :class:`Dialect`. Every
call goes through the :class:`GraphGateway`, so it runs under the graph limiter
and inside the caller's cancel scope. A document is replaced in one transaction:
readers see the old version or the new one, never a mixture, whatever is
cancelled when. Several documents may share a transaction
(:meth:`KnowledgeStore.replace_documents`): they are written together or not at
all, in as many statements as one document (one for documents not stored before,
while their rows fit one statement), which is what makes a bulk ingestion fast (the
cost of a transaction is mostly its round trips and commit).

Replacements run one at a time (``write_limiter``, one token by default): two
documents that mention the same entity would otherwise race to ``MERGE`` it, and
one of the two transactions would fail on the unique key or a write conflict.
That holds after a cancellation too: a gateway call returns only when it is done
on the engine (rolled back, or committed), so the next writer never overlaps a
cancelled one. Reads are not serialised.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from agent_trio.graph import _cypher as q
from agent_trio.graph._dialects import Dialect
from agent_trio.graph._gateway import GraphGateway, Record, Vector
from agent_trio.graph._lucene import lucene_query
from agent_trio.graph._read_rows import (
    ChunkHit,
    DocumentSummary,
    EntityRow,
    FactHit,
    Neighbourhood,
    StoredDocument,
    StoredVersion,
    chunk_hit_from,
    document_from,
    entities_from,
    entity_from,
    fact_hit_from,
    summary_from,
)
from agent_trio.graph._schema import VERTEX_TYPES
from agent_trio.graph._write_plan import DocumentVersion, replace_statements
from agent_trio.graph._write_records import (
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    MentionRecord,
    entity_key,
    utc_now_iso,
)

__all__ = ["KnowledgeStore"]

#: rows per statement when writing (a transaction of 16 new documents of about five
#: chunks each, with their entities, mentions and facts, is one statement)
_WRITE_BATCH = 500
#: nodes per transaction when deleting everything
_DELETE_BATCH = 5000


class KnowledgeStore:
    """Reads and writes the knowledge graph. ``dimensions`` is the embedder's.

    ``write_limiter`` bounds concurrent replacements (default: one at a time); the
    waits for it are tallied with the gateway's (``gateway.waits``).
    """

    def __init__(
        self,
        gateway: GraphGateway,
        dialect: Dialect,
        *,
        dimensions: int,
        write_limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self._gateway = gateway
        self.dialect = dialect
        self.dimensions = dimensions
        self.write_limiter = write_limiter or trio.CapacityLimiter(1)

    # -- schema and writes -----------------------------------------------------------
    async def ensure_schema(self) -> None:
        """Create missing types and indexes; ``ConfigError`` on a dimension mismatch."""
        await self.dialect.ensure_schema(self._gateway, self.dimensions)

    async def document_hash(self, document_id: str) -> str | None:
        """The stored version's ``content_hash``, ``None`` if the document is unknown."""
        rows = await self._gateway.query(q.DOCUMENT_HASH, {"id": document_id})
        return rows[0]["content_hash"] if rows else None

    async def document_version(self, document_id: str) -> StoredVersion | None:
        """The stored version's hash and counts, ``None`` if the document is unknown."""
        return (await self.document_versions([document_id])).get(document_id)

    async def document_versions(self, document_ids: Sequence[str]) -> dict[str, StoredVersion]:
        """:meth:`document_version` of several documents in one query; the unknown ones
        are missing from the answer."""
        if not document_ids:
            return {}
        rows = await self._gateway.query(q.DOCUMENT_VERSIONS, {"ids": list(set(document_ids))})
        return {row["id"]: _stored_version(row) for row in rows}

    async def replace_document(
        self,
        document: DocumentRecord,
        chunks: Sequence[ChunkRecord],
        entities: Sequence[EntityRecord] = (),
        facts: Sequence[FactRecord] = (),
        mentions: Sequence[MentionRecord] = (),
    ) -> None:
        """Make this the stored version of ``document.id``, in one transaction.

        Nothing of the previous version is left: its chunks, mentions and facts go,
        and so do entities that nothing else refers to. ``created_at`` is kept.
        Raises ``ValueError`` for records that contradict each other, before any
        statement is sent.
        """
        await self.replace_documents([DocumentVersion(document, chunks, entities, facts, mentions)])

    async def replace_documents(
        self, versions: Sequence[DocumentVersion], *, absent: bool = False
    ) -> None:
        """Make each of ``versions`` the stored version of its document, in ONE transaction.

        As :meth:`replace_document` for each; all of them are written or none. A
        document may appear once. Raises ``ValueError`` for records that contradict
        each other, before any statement is sent.

        ``absent``: the caller found none of these documents stored, so nothing of an
        old version is looked for (three statements fewer). If one was stored
        meanwhile with a chunk id of the new version (ingestion's ids always share
        one), the transaction fails whole (``GraphConstraintError``) and leaves the
        graph as it was: write it again without ``absent``.
        """
        if not versions:
            return
        statements = replace_statements(
            versions,
            dimensions=self.dimensions,
            now=utc_now_iso(),
            batch_size=_WRITE_BATCH,
            absent=absent,
        )
        waiting_since = trio.current_time()
        async with self.write_limiter:
            self._gateway.waits.add(self.write_limiter, trio.current_time() - waiting_since)
            await self._gateway.transaction(statements)

    async def delete_all(self) -> int:
        """Delete every document, chunk and entity (not the schema); return the count.

        Deletes in batches of bounded size, so a large graph does not need one huge
        transaction; if interrupted, run it again.
        """
        waiting_since = trio.current_time()
        async with self.write_limiter:
            self._gateway.waits.add(self.write_limiter, trio.current_time() - waiting_since)
            return await self._delete_in_batches()

    async def _delete_in_batches(self) -> int:
        deleted = 0
        for label in VERTEX_TYPES:
            statement = q.DELETE_BATCH.format(label=label)
            while True:
                rows = await self._gateway.query(statement, {"batch": _DELETE_BATCH})
                count = int(rows[0]["deleted"]) if rows else 0
                deleted += count
                if count < _DELETE_BATCH:
                    break
        return deleted

    # -- documents -------------------------------------------------------------------
    async def list_documents(self, limit: int, offset: int) -> tuple[list[DocumentSummary], int]:
        """One page of documents, newest first, and how many there are in all."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        rows = await self._gateway.query(q.LIST_DOCUMENTS, {"limit": limit, "offset": offset})
        total = await self._gateway.query(q.COUNT_DOCUMENTS)
        return [summary_from(r) for r in rows], int(total[0]["total"]) if total else 0

    async def get_document(self, document_id: str) -> StoredDocument | None:
        """The document with its content and chunks in order; ``None`` if unknown."""
        rows = await self._gateway.query(q.GET_DOCUMENT, {"id": document_id})
        return document_from(rows[0]) if rows else None

    # -- chunk search ----------------------------------------------------------------
    async def vector_search(self, embedding: Sequence[float], k: int) -> list[ChunkHit]:
        """The ``k`` chunks nearest to ``embedding`` (cosine), best first."""
        vector = self._query_vector(embedding)
        if k < 1 or vector is None:
            return []
        params = {"index": self.dialect.vector_index, "k": k, "vector": vector}
        rows = await self._gateway.query(q.VECTOR_CHUNKS, params)
        return [chunk_hit_from(r, self.dialect.vector_score(r["score"])) for r in rows]

    async def fulltext_search(
        self, text: str, k: int, *, common_alone: bool = True
    ) -> list[ChunkHit]:
        """The ``k`` chunks whose text best matches the words of ``text``, best first.

        Any user text is safe (see ``_lucene.py``); text without a word finds nothing,
        and so does text of nothing but common words when ``common_alone`` is false.
        """
        query = lucene_query(text, common_alone=common_alone)
        if k < 1 or query is None:
            return []
        params = {"index": self.dialect.chunk_text_index, "query": query, "k": k}
        rows = await self._gateway.query(q.FULLTEXT_CHUNKS, params)
        scores = self.dialect.fulltext_scores([r["score"] for r in rows])
        return [chunk_hit_from(r, s) for r, s in zip(rows, scores, strict=True)]

    def _query_vector(self, embedding: Sequence[float]) -> list[float] | None:
        if len(embedding) != self.dimensions:
            raise ValueError(
                f"query embedding has {len(embedding)} dimensions, "
                f"the vector index {self.dimensions}"
            )
        vector = Vector(map(float, embedding))
        return vector if any(vector) else None  # a zero vector has no direction

    # -- facts and entities ----------------------------------------------------------
    async def facts_for_query(self, text: str, k: int) -> list[FactHit]:
        """Facts of the entities whose names best match ``text``; ``score`` in [0, 1]."""
        query = lucene_query(text)
        if k < 1 or query is None:
            return []
        params = {"index": self.dialect.entity_name_index, "query": query, "k": k, "entities": k}
        rows = await self._gateway.query(q.FACTS_FOR_QUERY, params)
        scores = self.dialect.fulltext_scores([r["score"] for r in rows])
        return [fact_hit_from(r, s) for r, s in zip(rows, scores, strict=True)]

    async def facts_for_chunks(self, chunk_ids: Sequence[str], k: int) -> list[FactHit]:
        """Facts of the entities the chunks mention; ``chunk_ids`` best first.

        Ordered by the first chunk that leads to a fact (``via_chunk_id``), facts
        stated in the given chunks first.
        """
        ids = list(dict.fromkeys(chunk_ids))
        if k < 1 or not ids:
            return []
        chunks = [{"id": cid, "rank": rank} for rank, cid in enumerate(ids)]
        rows = await self._gateway.query(q.FACTS_FOR_CHUNKS, {"chunks": chunks, "ids": ids, "k": k})
        return [fact_hit_from(r, 0.0) for r in rows]

    async def find_entity(self, name: str) -> EntityRow | None:
        """The entity named ``name``: by normalised key, else the best full-text match."""
        key = entity_key(name)
        rows = await self._gateway.query(q.ENTITY_BY_KEY, {"key": key}) if key else []
        query = lucene_query(name)
        if not rows and query is not None:
            params = {"index": self.dialect.entity_name_index, "query": query}
            rows = await self._gateway.query(q.ENTITY_BY_NAME, params)
        return entity_from(rows[0]) if rows else None

    async def entity_neighbourhood(
        self, name: str, depth: int = 1, *, limit: int = 100
    ) -> Neighbourhood | None:
        """The entity, the facts on paths of up to ``depth`` (1-3) facts, their ends."""
        query = q.neighbourhood_query(depth)
        entity = await self.find_entity(name)
        if entity is None:
            return None
        rows = await self._gateway.query(query, {"key": entity.key, "k": limit})
        facts = tuple(fact_hit_from(r, 0.0) for r in rows)
        return Neighbourhood(entity, depth, entities_from(rows, entity), facts)

    async def entity_timeline(self, name: str, *, limit: int = 100) -> list[FactHit]:
        """The entity's facts by ``valid_at`` (undated last); ``[]`` if it is unknown."""
        entity = await self.find_entity(name)
        if entity is None:
            return []
        rows = await self._gateway.query(q.TIMELINE, {"key": entity.key, "k": limit})
        return [fact_hit_from(r, 0.0) for r in rows]


def _stored_version(row: Record) -> StoredVersion:
    return StoredVersion(
        content_hash=row["content_hash"],
        chunk_count=int(row.get("chunk_count") or 0),
        entity_count=int(row.get("entity_count") or 0),
        fact_count=int(row.get("fact_count") or 0),
    )
