"""The graph room: the only code that touches the neo4j driver."""

from agent_trio.graph._dialects import (
    ArcadeDialect,
    Dialect,
    DialectName,
    Neo4jDialect,
    make_dialect,
)
from agent_trio.graph._gateway import GraphGateway, GraphTarget, Record, Statement, open_graph
from agent_trio.graph._lucene import STOPWORDS, lucene_query
from agent_trio.graph._read_rows import (
    ChunkHit,
    DocumentSummary,
    EntityRow,
    FactHit,
    Neighbourhood,
    StoredChunk,
    StoredDocument,
    StoredVersion,
)
from agent_trio.graph._sessions import (
    MessageRow,
    MessageStatus,
    SessionRow,
    SessionStore,
    Turn,
    new_id,
)
from agent_trio.graph._store import KnowledgeStore
from agent_trio.graph._write_plan import DocumentVersion
from agent_trio.graph._write_records import (
    LEGAL_FORMS,
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    MentionRecord,
    entity_id_for,
    entity_key,
    fact_uuid_for,
)

__all__ = [
    "LEGAL_FORMS",
    "STOPWORDS",
    "ArcadeDialect",
    "ChunkHit",
    "ChunkRecord",
    "Dialect",
    "DialectName",
    "DocumentRecord",
    "DocumentSummary",
    "DocumentVersion",
    "EntityRecord",
    "EntityRow",
    "FactHit",
    "FactRecord",
    "GraphGateway",
    "GraphTarget",
    "KnowledgeStore",
    "MentionRecord",
    "MessageRow",
    "MessageStatus",
    "Neighbourhood",
    "Neo4jDialect",
    "Record",
    "SessionRow",
    "SessionStore",
    "Statement",
    "StoredChunk",
    "StoredDocument",
    "StoredVersion",
    "Turn",
    "entity_id_for",
    "entity_key",
    "fact_uuid_for",
    "lucene_query",
    "make_dialect",
    "new_id",
    "open_graph",
]
