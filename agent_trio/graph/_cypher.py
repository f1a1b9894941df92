"""The Cypher text of the knowledge store, shared by both dialects.

Everything that varies is a parameter, index names included (``$index``); the
only text ever formatted in is a validated small integer (a path depth, which
Cypher does not take as a parameter). Each statement is small: a cancelled call
may still finish on the server, and atomicity comes from the transaction around
the statements, not from cancellation.
"""

from __future__ import annotations

__all__ = [
    "CHUNK_RETURN",
    "COUNT_DOCUMENTS",
    "CREATE_CHUNKS",
    "CREATE_FACTS",
    "CREATE_MENTIONS",
    "DELETE_BATCH",
    "DELETE_OLD_CHUNKS",
    "DELETE_OLD_FACTS",
    "DELETE_ORPHANED_ENTITIES",
    "DOCUMENT_HASH",
    "DOCUMENT_VERSIONS",
    "ENTITY_BY_KEY",
    "ENTITY_BY_NAME",
    "FACTS_FOR_CHUNKS",
    "FACTS_FOR_QUERY",
    "FULLTEXT_CHUNKS",
    "GET_DOCUMENT",
    "LIST_DOCUMENTS",
    "MERGE_DOCUMENTS",
    "MERGE_ENTITIES",
    "TIMELINE",
    "VECTOR_CHUNKS",
    "WRITE_PARTS_JOIN",
    "neighbourhood_query",
]

# -- replacing document versions (all in one transaction, in this order) -----------
# Each statement covers every document of the transaction (``$ids``, or rows that
# name their document), so a transaction of many documents costs as many round
# trips as one of a single document. The writing parts (``MERGE_DOCUMENTS`` to
# ``CREATE_FACTS``) each read their own parameter, so that several of them can be
# joined by ``WRITE_PARTS_JOIN`` into one statement.

#: the old versions' facts, by their ``document_id`` (an index of its own): a path
#: through the entities would walk every fact of an entity that many documents
#: mention, ten to forty times slower with 400 documents about the same people
DELETE_OLD_FACTS = """
MATCH ()-[r:RELATES_TO]->()
WHERE r.document_id IN $ids
DELETE r
"""

#: entities that only the old versions refer to
DELETE_ORPHANED_ENTITIES = """
UNWIND $ids AS id
MATCH (:Chunk {document_id: id})-[:MENTIONS]->(e:Entity)
WITH DISTINCT e
WHERE NOT (e)-[:RELATES_TO]-()
  AND NOT EXISTS { MATCH (e)<-[:MENTIONS]-(o:Chunk) WHERE NOT (o.document_id IN $ids) }
DETACH DELETE e
"""

DELETE_OLD_CHUNKS = """
UNWIND $ids AS id
MATCH (c:Chunk {document_id: id})
DETACH DELETE c
"""

#: what joins two writing parts in one statement: an aggregation without a key gives
#: one row even when the part before it wrote nothing, so the next part runs once
#: per row of its own parameter whatever came before
WRITE_PARTS_JOIN = "WITH count(*) AS done"

MERGE_DOCUMENTS = """
UNWIND $documents AS r
MERGE (d:Document {id: r.id})
ON CREATE SET d.created_at = $now
SET d.title = r.title, d.source = r.source, d.content = r.content,
    d.content_hash = r.content_hash, d.metadata = r.metadata,
    d.chunk_count = r.chunk_count, d.entity_count = r.entity_count,
    d.fact_count = r.fact_count, d.updated_at = $now
"""

CREATE_CHUNKS = """
UNWIND $chunks AS r
MATCH (d:Document {id: r.document_id})
CREATE (c:Chunk {id: r.id, document_id: r.document_id, index: r.index, text: r.text,
                 token_estimate: r.token_estimate, embedding: r.embedding,
                 metadata: r.metadata})-[:PART_OF]->(d)
"""

MERGE_ENTITIES = """
UNWIND $entities AS r
MERGE (e:Entity {key: r.key})
ON CREATE SET e.id = r.id, e.name = r.name, e.type = r.type
"""

CREATE_MENTIONS = """
UNWIND $mentions AS r
MATCH (c:Chunk {id: r.chunk_id}), (e:Entity {key: r.entity_key})
CREATE (c)-[:MENTIONS]->(e)
"""

CREATE_FACTS = """
UNWIND $facts AS r
MATCH (s:Entity {key: r.subject_key}), (o:Entity {key: r.object_key})
CREATE (s)-[:RELATES_TO {uuid: r.uuid, relation: r.relation, fact: r.fact,
                         valid_at: r.valid_at, invalid_at: r.invalid_at,
                         chunk_id: r.chunk_id, document_id: r.document_id,
                         created_at: $now}]->(o)
"""

#: one batch of ``--clean``; the label is one of the schema's, never user input
DELETE_BATCH = """
MATCH (n:{label})
WITH n LIMIT $batch
DETACH DELETE n
RETURN count(*) AS deleted
"""

# -- documents ---------------------------------------------------------------------

DOCUMENT_HASH = "MATCH (d:Document {id: $id}) RETURN d.content_hash AS content_hash"

#: the stored versions of several documents in one round trip (the unknown ones have no row)
DOCUMENT_VERSIONS = """
UNWIND $ids AS id
MATCH (d:Document {id: id})
RETURN d.id AS id, d.content_hash AS content_hash, d.chunk_count AS chunk_count,
       d.entity_count AS entity_count, d.fact_count AS fact_count
"""

COUNT_DOCUMENTS = "MATCH (d:Document) RETURN count(d) AS total"

LIST_DOCUMENTS = """
MATCH (d:Document)
RETURN d.id AS id, d.title AS title, d.source AS source, d.chunk_count AS chunk_count,
       d.created_at AS created_at, d.updated_at AS updated_at, d.metadata AS metadata
ORDER BY d.created_at DESC, d.id
SKIP $offset LIMIT $limit
"""

GET_DOCUMENT = """
MATCH (d:Document {id: $id})
OPTIONAL MATCH (c:Chunk)-[:PART_OF]->(d)
WITH d, c ORDER BY c.index
RETURN d.id AS id, d.title AS title, d.source AS source, d.content AS content,
       d.content_hash AS content_hash, d.created_at AS created_at,
       d.updated_at AS updated_at, d.metadata AS metadata,
       collect(c {.id, .index, .text, .token_estimate, .metadata}) AS chunks
"""

# -- chunk search ------------------------------------------------------------------

CHUNK_RETURN = """
MATCH (node)-[:PART_OF]->(d:Document)
RETURN node.id AS chunk_id, d.id AS document_id, node.text AS content, score,
       node.metadata AS chunk_metadata, d.metadata AS document_metadata,
       d.title AS document_title, d.source AS document_source
ORDER BY score DESC
"""

VECTOR_CHUNKS = (
    """
CALL db.index.vector.queryNodes($index, $k, $vector) YIELD node, score
"""
    + CHUNK_RETURN
)

FULLTEXT_CHUNKS = (
    """
CALL db.index.fulltext.queryNodes($index, $query, {limit: $k}) YIELD node, score
WITH node, score ORDER BY score DESC LIMIT $k
"""
    + CHUNK_RETURN
)

# -- facts and entities ------------------------------------------------------------

_FACT_RETURN = """
WITH r, score, via, startNode(r) AS s, endNode(r) AS t
RETURN r.uuid AS uuid, r.fact AS fact, r.relation AS relation,
       r.valid_at AS valid_at, r.invalid_at AS invalid_at,
       s.id AS source_node_uuid, t.id AS target_node_uuid,
       s.name AS source_name, t.name AS target_name,
       s.key AS source_key, t.key AS target_key, s.type AS source_type, t.type AS target_type,
       r.chunk_id AS chunk_id, r.document_id AS document_id, score, via
"""

#: facts of the entities whose names best match the query
FACTS_FOR_QUERY = (
    """
CALL db.index.fulltext.queryNodes($index, $query, {limit: $entities}) YIELD node, score
WITH node AS e, score ORDER BY score DESC LIMIT $entities
MATCH (e)-[r:RELATES_TO]-()
WITH r, max(score) AS score
ORDER BY score DESC, r.valid_at DESC
LIMIT $k
WITH r, score, null AS via
"""
    + _FACT_RETURN
)

#: facts of the entities the given chunks mention, best-ranked chunk first and,
#: for one chunk, the facts it states itself first
FACTS_FOR_CHUNKS = (
    """
UNWIND $chunks AS x
MATCH (:Chunk {id: x.id})-[:MENTIONS]->(:Entity)-[r:RELATES_TO]-()
WITH r, min(x.rank) AS rank
WITH r, rank, CASE WHEN r.chunk_id IN $ids THEN 0 ELSE 1 END AS indirect
ORDER BY rank, indirect, r.valid_at DESC
LIMIT $k
WITH r, 0.0 AS score, $ids[rank] AS via
"""
    + _FACT_RETURN
)

_ENTITY_RETURN = "RETURN e.id AS id, e.key AS key, e.name AS name, e.type AS type"

ENTITY_BY_KEY = "MATCH (e:Entity {key: $key})\n" + _ENTITY_RETURN

ENTITY_BY_NAME = (
    """
CALL db.index.fulltext.queryNodes($index, $query, {limit: 1}) YIELD node, score
WITH node AS e ORDER BY score DESC LIMIT 1
"""
    + _ENTITY_RETURN
)

TIMELINE = (
    """
MATCH (:Entity {key: $key})-[r:RELATES_TO]-()
WITH DISTINCT r
ORDER BY r.valid_at IS NULL, r.valid_at, r.created_at, r.uuid
LIMIT $k
WITH r, 0.0 AS score, null AS via
"""
    + _FACT_RETURN
)


def neighbourhood_query(depth: int) -> str:
    """Facts on paths of up to ``depth`` facts from the entity ``$key``."""
    if not 1 <= depth <= 3:
        raise ValueError(f"depth must be between 1 and 3, got {depth}")
    return (
        f"""
MATCH p = (:Entity {{key: $key}})-[:RELATES_TO*1..{int(depth)}]-(:Entity)
UNWIND relationships(p) AS r
WITH DISTINCT r
ORDER BY r.valid_at IS NULL, r.valid_at, r.uuid
LIMIT $k
WITH r, 0.0 AS score, null AS via
"""
        + _FACT_RETURN
    )
