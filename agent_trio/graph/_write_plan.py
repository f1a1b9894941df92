"""The statements that replace document versions, checked before any is sent.

:func:`replace_statements` turns the records of one or more document versions into
the ordered statements of ONE transaction: delete the old versions' facts, the
entities only they referred to and their chunks (with their mentions), then write
the documents, their chunks with embeddings, the entities (``MERGE``), mentions and
facts. Every statement covers all the documents at once (``UNWIND``), so a
transaction costs as many round trips whether it carries one document or forty. The
writing parts share a statement as long as their rows together are at most
``batch_size``: a new document is written by one statement. Every reference between
the records is checked here first, so a statement never silently matches nothing and
leaves a new version incomplete.

Both ends of every fact are recorded as mentioned by the fact's chunk (added if the
caller did not say so): a chunk that states a fact mentions its entities, and the
next replacement finds the facts to delete through those mentions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from agent_trio.graph import _cypher as q
from agent_trio.graph._gateway import Statement, Vector
from agent_trio.graph._write_records import (
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    MentionRecord,
)

__all__ = ["DocumentVersion", "replace_statements"]

T = TypeVar("T")


@dataclass(frozen=True)
class DocumentVersion:
    """One document version: the document and everything stored with it."""

    document: DocumentRecord
    chunks: Sequence[ChunkRecord] = ()
    entities: Sequence[EntityRecord] = ()
    facts: Sequence[FactRecord] = ()
    mentions: Sequence[MentionRecord] = ()


def replace_statements(
    versions: Sequence[DocumentVersion],
    *,
    dimensions: int,
    now: str,
    batch_size: int,
    absent: bool = False,
) -> list[Statement]:
    """The statements of one transaction that make each of ``versions`` the stored one.

    With ``absent`` (the caller found none of the documents stored), the statements
    that remove an old version are left out. Should a version have been stored
    meanwhile, the transaction fails whole as long as its chunks share an id with the
    new ones (the unique index refuses the new chunk): ingestion's chunk ids,
    ``<document id>:<index>``, always share index 0.

    Raises ``ValueError`` when the records contradict each other (a document given
    twice, a duplicate chunk id, a fact about an entity not given with its document,
    an embedding of the wrong size).
    """
    ids: list[str] = []
    documents: list[dict[str, Any]] = []
    chunk_rows: list[dict[str, Any]] = []
    entity_rows: dict[str, dict[str, Any]] = {}
    mention_rows: list[dict[str, str]] = []
    fact_rows: list[dict[str, Any]] = []
    all_chunk_ids: set[str] = set()
    for version in versions:
        document = version.document
        if document.id in ids:
            raise ValueError(f"document {document.id!r} appears twice in one transaction")
        ids.append(document.id)
        chunk_ids = _check_chunks(version.chunks, dimensions)
        if twice := chunk_ids & all_chunk_ids:
            raise ValueError(f"chunk id {min(twice)!r} appears twice")
        all_chunk_ids |= chunk_ids
        own_entities = _entity_rows(version.entities)
        keys = set(own_entities)
        facts = _fact_rows(version.facts, chunk_ids, keys, document.id)
        mention_rows += _mention_rows(version.mentions, version.facts, chunk_ids, keys)
        fact_rows += facts
        for key, row in own_entities.items():  # the first record of a key wins
            entity_rows.setdefault(key, row)
        counts = (len(version.chunks), len(own_entities), len(facts))
        documents.append(_document_row(document, counts))
        chunk_rows += [_chunk_row(c, document.id) for c in version.chunks]
    by_ids = {"ids": ids}
    out = (
        []
        if absent
        else [
            Statement(q.DELETE_OLD_FACTS, by_ids),
            Statement(q.DELETE_ORPHANED_ENTITIES, by_ids),
            Statement(q.DELETE_OLD_CHUNKS, by_ids),
        ]
    )
    parts = {
        "documents": documents,
        "chunks": chunk_rows,
        "entities": list(entity_rows.values()),
        "mentions": mention_rows,
        "facts": fact_rows,
    }
    return out + _write_statements(parts, now=now, batch_size=batch_size)


#: the writing parts by the parameter each reads, in the order they must run: each
#: refers to what the ones before it wrote
_WRITE_PARTS = (
    ("documents", q.MERGE_DOCUMENTS),
    ("chunks", q.CREATE_CHUNKS),
    ("entities", q.MERGE_ENTITIES),
    ("mentions", q.CREATE_MENTIONS),
    ("facts", q.CREATE_FACTS),
)


def _write_statements(
    parts: Mapping[str, list[Any]], *, now: str, batch_size: int
) -> list[Statement]:
    """The writing parts in order, packed into as few statements as ``batch_size`` allows.

    Consecutive parts share a statement, joined by ``WRITE_PARTS_JOIN``, as long as
    their rows together are at most ``batch_size``: the new documents of a transaction
    are usually one statement, one round trip to the engine instead of five. A part
    with more rows is cut into statements of its own. A part without rows is left
    out. A statement holds a part at most once: every batch but a part's last is full.
    """
    out: list[Statement] = []
    texts: list[str] = []
    params: dict[str, Any] = {}
    for name, text in _WRITE_PARTS:
        for batch in _batches(parts[name], batch_size):
            if texts and sum(len(params[n]) for n in params) + len(batch) > batch_size:
                out.append(_joined(texts, params, now))
                texts, params = [], {}
            texts.append(text)
            params[name] = batch
    if texts:
        out.append(_joined(texts, params, now))
    return out


def _joined(texts: list[str], params: dict[str, Any], now: str) -> Statement:
    return Statement(q.WRITE_PARTS_JOIN.join(texts), {**params, "now": now})


def dump_metadata(metadata: Mapping[str, Any], *, owner: str) -> str:
    try:
        return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}: metadata is not JSON-serialisable: {exc}") from None


def _document_row(document: DocumentRecord, counts: tuple[int, int, int]) -> dict[str, Any]:
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


def _chunk_row(chunk: ChunkRecord, document_id: str) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "document_id": document_id,
        "index": chunk.index,
        "text": chunk.text,
        "token_estimate": chunk.token_estimate,
        "embedding": Vector(map(float, chunk.embedding)),
        "metadata": dump_metadata(chunk.metadata, owner=f"chunk {chunk.id}"),
    }


def _entity_rows(entities: Iterable[EntityRecord]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for e in entities:  # the first record of a key wins
        rows.setdefault(e.key, {"key": e.key, "id": e.id, "name": e.name, "type": e.type})
    return rows


def _fact_rows(
    facts: Iterable[FactRecord], chunk_ids: set[str], keys: set[str], document_id: str
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
                "document_id": document_id,
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
