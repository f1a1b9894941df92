"""The knowledge graph's shape, independent of the database that stores it.

::

    (:Document {id, title, source, content, content_hash, metadata, chunk_count,
                created_at, updated_at})
        ^
        | PART_OF
        |
    (:Chunk {id, document_id, index, text, token_estimate, embedding, metadata})
        |
        | MENTIONS
        v
    (:Entity {key, id, name, type}) -[:RELATES_TO {uuid, relation, fact, valid_at,
                                                   invalid_at, chunk_id, document_id,
                                                   created_at}]-> (:Entity)

* ``metadata`` is a JSON string (maps are not portable between engines).
* Instants (``created_at``, ``updated_at``) are UTC ISO-8601 strings ending in ``Z``;
  ``valid_at`` / ``invalid_at`` are ISO-8601 dates or UTC instants. Time zones are
  never stored: the embedded engine would drop them.
* ``Entity.key`` is the normalised name (:func:`entity_key`); ``Entity.id`` is a
  UUID derived from the key, so rebuilding the graph gives every entity its old id.
* A fact is one ``RELATES_TO`` edge; ``chunk_id`` / ``document_id`` say where it was
  stated (provenance), and replacing a document removes exactly its own facts.

Which indexes exist is listed here (:data:`UNIQUE_KEYS`, :data:`LOOKUP_KEYS`,
:data:`EDGE_LOOKUP_KEYS`, :data:`FULLTEXT_PROPERTIES`, :data:`VECTOR_PROPERTY`);
how they are created and named is the dialect's business (``_dialects.py``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EDGE_LOOKUP_KEYS",
    "EDGE_TYPES",
    "FULLTEXT_PROPERTIES",
    "LOOKUP_KEYS",
    "PROPERTY_TYPES",
    "SESSION_LOOKUP_KEYS",
    "SESSION_PROPERTY_TYPES",
    "SESSION_UNIQUE_KEYS",
    "SESSION_VERTEX_TYPES",
    "UNIQUE_KEYS",
    "VECTOR_PROPERTY",
    "VERTEX_TYPES",
    "LabelProperty",
]

LabelProperty = tuple[str, str]

VERTEX_TYPES: Final = ("Document", "Chunk", "Entity")
EDGE_TYPES: Final = ("PART_OF", "MENTIONS", "RELATES_TO")

#: looked up by exact value, unique
UNIQUE_KEYS: Final[tuple[LabelProperty, ...]] = (
    ("Document", "id"),
    ("Chunk", "id"),
    ("Entity", "key"),
)
#: looked up by exact value, not unique
LOOKUP_KEYS: Final[tuple[LabelProperty, ...]] = (("Chunk", "document_id"),)
#: edge properties looked up by exact value: replacing a document finds its facts by
#: their ``document_id``, not through the entities (one mentioned in every document
#: has every document's facts)
EDGE_LOOKUP_KEYS: Final[tuple[LabelProperty, ...]] = (("RELATES_TO", "document_id"),)
#: searched with the full-text procedure
FULLTEXT_PROPERTIES: Final[tuple[LabelProperty, ...]] = (("Chunk", "text"), ("Entity", "name"))
#: searched with the vector procedure (cosine similarity)
VECTOR_PROPERTY: Final[LabelProperty] = ("Chunk", "embedding")

#: declared property types, for engines that want them before an index is built
PROPERTY_TYPES: Final[tuple[tuple[str, str, str], ...]] = (
    ("Document", "id", "STRING"),
    ("Chunk", "id", "STRING"),
    ("Chunk", "document_id", "STRING"),
    ("Chunk", "text", "STRING"),
    ("Chunk", "embedding", "ARRAY_OF_FLOATS"),
    ("Entity", "key", "STRING"),
    ("Entity", "name", "STRING"),
    ("RELATES_TO", "document_id", "STRING"),
)

# -- chat sessions (their own types: clearing the knowledge graph keeps them) ---------
#
#     (:Session {id, user_id, metadata, created_at, updated_at})
#     (:Message {id, session_id, role, content, status, tool_calls, created_at})
#
# ``Message.session_id`` links a message to its session (no edge: a message is
# written in one statement, whatever happens to the session around it);
# ``tool_calls`` is a JSON string. Instants are UTC ISO-8601 strings with
# microseconds, so a session's messages sort by ``created_at``.

SESSION_VERTEX_TYPES: Final = ("Session", "Message")
SESSION_UNIQUE_KEYS: Final[tuple[LabelProperty, ...]] = (("Session", "id"), ("Message", "id"))
SESSION_LOOKUP_KEYS: Final[tuple[LabelProperty, ...]] = (("Message", "session_id"),)
SESSION_PROPERTY_TYPES: Final[tuple[tuple[str, str, str], ...]] = (
    ("Session", "id", "STRING"),
    ("Message", "id", "STRING"),
    ("Message", "session_id", "STRING"),
)
