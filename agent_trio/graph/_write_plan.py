"""The statements that replace one document version, checked before any is sent.

:func:`replace_statements` turns records into the ordered statements of ONE
transaction: delete the old version's facts, the entities only it referred to and
its chunks (with their mentions), then write the document, its chunks with
embeddings, the entities (``MERGE``), mentions and facts, batched with ``UNWIND``.
Every reference between the records is checked here first, so a statement never
silently matches nothing and leaves the new version incomplete.

Both ends of every fact are recorded as mentioned by the fact's chunk (added if the
caller did not say so): a chunk that states a fact mentions its entities, and the
next replacement finds the facts to delete through those mentions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from agent_trio.graph import _cypher as q
from agent_trio.graph._gateway import Statement
from agent_trio.graph._records import (
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    MentionRecord,
)

__all__ = ["replace_statements"]

T = TypeVar("T")


def replace_statements(
    document: DocumentRecord,
    chunks: Sequence[ChunkRecord],
    entities: Sequence[EntityRecord],
    facts: Sequence[FactRecord],
    mentions: Sequence[MentionRecord],
    *,
    dimensions: int,
    now: str,
    batch_size: int,
) -> list[Statement]:
    """The statements of one transaction that make ``document`` the stored version.

    Raises ``ValueError`` when the records contradict each other (a duplicate chunk
    id, a fact about an entity not given, an embedding of the wrong size).
    """
    chunk_ids = _check_chunks(chunks, dimensions)
    entity_rows = _entity_rows(entities)
    keys = {row["key"] for row in entity_rows}
    fact_rows = _fact_rows(facts, chunk_ids, keys)
    mention_rows = _mention_rows(mentions, facts, chunk_ids, keys)
    doc_id = {"document_id": document.id}
    out = [
        Statement(q.DELETE_OLD_FACTS, doc_id),
        Statement(q.DELETE_ORPHANED_ENTITIES, doc_id),
        Statement(q.DELETE_OLD_CHUNKS, doc_id),
        Statement(
            q.MERGE_DOCUMENT,
            _document_params(document, (len(chunks), len(entity_rows), len(fact_rows)), now),
        ),
    ]
    chunk_rows = [_chunk_row(c) for c in chunks]
    out += [
        Statement(q.CREATE_CHUNKS, {**doc_id, "rows": b}) for b in _batches(chunk_rows, batch_size)
    ]
    out += [Statement(q.MERGE_ENTITIES, {"rows": b}) for b in _batches(entity_rows, batch_size)]
    out += [Statement(q.CREATE_MENTIONS, {"rows": b}) for b in _batches(mention_rows, batch_size)]
    out += [
        Statement(q.CREATE_FACTS, {**doc_id, "now": now, "rows": b})
        for b in _batches(fact_rows, batch_size)
    ]
    return out


def dump_metadata(metadata: Mapping[str, Any], *, owner: str) -> str:
    try:
        return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}: metadata is not JSON-serialisable: {exc}") from None


def _document_params(
    document: DocumentRecord, counts: tuple[int, int, int], now: str
) -> dict[str, Any]:
    chunk_count, entity_count, fact_count = counts
    return {
        "id": document.id,
        "title": document.title,
        "source": document.source,
        "content": document.content,
        "content_hash": document.content_hash,
        "metadata": dump_metadata(document.metadata, owner=f"document {document.id}"),
        "chunk_count": chunk_count,
        "entity_count": entity_count,
        "fact_count": fact_count,
        "now": now,
    }


def _check_chunks(chunks: Sequence[ChunkRecord], dimensions: int) -> set[str]:
    ids: set[str] = set()
    for chunk in chunks:
        if chunk.id in ids:
            raise ValueError(f"chunk id {chunk.id!r} appears twice")
        if len(chunk.embedding) != dimensions:
            raise ValueError(
                f"chunk {chunk.id!r} has a {len(chunk.embedding)}-dimensional embedding; "
                f"the vector index holds {dimensions} dimensions"
            )
        ids.add(chunk.id)
    return ids


def _chunk_row(chunk: ChunkRecord) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "index": chunk.index,
        "text": chunk.text,
        "token_estimate": chunk.token_estimate,
        "embedding": [float(x) for x in chunk.embedding],
        "metadata": dump_metadata(chunk.metadata, owner=f"chunk {chunk.id}"),
    }


def _entity_rows(entities: Iterable[EntityRecord]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for e in entities:  # the first record of a key wins
        rows.setdefault(e.key, {"key": e.key, "id": e.id, "name": e.name, "type": e.type})
    return list(rows.values())


def _fact_rows(
    facts: Iterable[FactRecord], chunk_ids: set[str], keys: set[str]
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for f in facts:
        _known(f.chunk_id, chunk_ids, f"fact {f.uuid}: chunk")
        _known(f.subject_key, keys, f"fact {f.uuid}: subject entity")
        _known(f.object_key, keys, f"fact {f.uuid}: object entity")
        rows.setdefault(
            f.uuid,
            {
                "uuid": f.uuid,
                "subject_key": f.subject_key,
                "object_key": f.object_key,
                "relation": f.relation,
                "fact": f.fact,
                "valid_at": f.valid_at,
                "invalid_at": f.invalid_at,
                "chunk_id": f.chunk_id,
            },
        )
    return list(rows.values())


def _mention_rows(
    mentions: Iterable[MentionRecord],
    facts: Iterable[FactRecord],
    chunk_ids: set[str],
    keys: set[str],
) -> list[dict[str, str]]:
    pairs = dict.fromkeys((m.chunk_id, m.entity_key) for m in mentions)
    for f in facts:
        pairs.update(dict.fromkeys([(f.chunk_id, f.subject_key), (f.chunk_id, f.object_key)]))
    for chunk_id, key in pairs:
        _known(chunk_id, chunk_ids, "mention: chunk")
        _known(key, keys, "mention: entity")
    return [{"chunk_id": c, "entity_key": k} for c, k in pairs]


def _known(value: str, known: set[str], what: str) -> None:
    if value not in known:
        raise ValueError(f"{what} {value!r} is not among the records written with it")


def _batches(rows: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])
