"""Pure parts of the knowledge store and search: no engine needed."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from agent_trio import ConfigError, GraphQueryError, GraphUnavailable
from agent_trio.graph import (
    ArcadeDialect,
    ChunkRecord,
    DocumentRecord,
    DocumentVersion,
    Neo4jDialect,
    lucene_query,
    make_dialect,
)
from agent_trio.graph._dialects import arcadedb_schema_commands, neo4j_schema_statements
from agent_trio.graph._write_plan import replace_statements
from agent_trio.search import RRF_K, reciprocal_rank_fusion, weighted_fusion

# -- fusion --------------------------------------------------------------------------


def test_rrf_is_normalised_and_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"]])
    assert (
        fused["a"]
        == fused["b"]
        == pytest.approx((1 / (RRF_K + 1) + 1 / (RRF_K + 2)) / (2 / (RRF_K + 1)))
    )
    assert fused["c"] == pytest.approx((1 / (RRF_K + 3)) / (2 / (RRF_K + 1)))
    assert fused["c"] == fused["d"]  # the same rank in one list each
    agreement = reciprocal_rank_fusion([["x", "a"], ["y", "a"]])
    assert agreement["a"] > agreement["x"] == agreement["y"]  # second twice beats first once
    assert reciprocal_rank_fusion([["x"], ["x"]]) == {"x": 1.0}
    assert reciprocal_rank_fusion([["x"], []]) == {"x": 0.5}
    assert reciprocal_rank_fusion([]) == {}


def test_rrf_counts_a_duplicate_once_at_its_best_rank() -> None:
    assert reciprocal_rank_fusion([["a", "a", "b"]], k=0) == {"a": 1.0, "b": 0.5}


def test_weighted_fusion_follows_the_formula() -> None:
    vector = {"a": 0.9, "b": 0.6}
    text = {"b": 1.0, "c": 0.5}
    fused = weighted_fusion(vector, text, 0.25)
    assert fused == pytest.approx({"a": 0.675, "b": 0.7, "c": 0.125})
    assert weighted_fusion(vector, text, 0.0) == pytest.approx({"a": 0.9, "b": 0.6, "c": 0.0})
    assert weighted_fusion(vector, text, 1.0) == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.5})
    with pytest.raises(ValueError, match="text_weight"):
        weighted_fusion(vector, text, -0.1)


# -- Lucene --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("O'Brien AND (", '"O\'Brien"'),
        ("O'Brien NEAR (", '"O\'Brien" "NEAR"'),
        ("What did Alice do at the company?", '"Alice" "company?"'),
        ("what is it?", '"what" "is" "it?"'),
        ('say "hi', '"say" "\\"hi"'),
        ("back\\slash", '"back\\\\slash"'),
        ("fox* ~ fox*", '"fox*"'),
        ("Fox fox FOX", '"Fox"'),
        ("* ~ ( ) !", None),
        ("", None),
    ],
)
def test_lucene_query_quotes_every_word(text: str, query: str | None) -> None:
    assert lucene_query(text) == query


def test_lucene_query_can_refuse_a_text_of_common_words_alone() -> None:
    assert lucene_query("what is it?", common_alone=False) is None
    assert lucene_query("What did Alice do?", common_alone=False) == '"Alice"'
    assert lucene_query("* ~", common_alone=False) is None


def test_lucene_query_is_bounded() -> None:
    query = lucene_query(" ".join(f"w{i}" for i in range(1000)))
    assert query is not None
    assert query.count('"') == 2 * 64


# -- Neo4j dialect (no server here: the statements are checked as text) ---------------


def test_neo4j_schema_statements_are_the_manuals() -> None:
    assert neo4j_schema_statements(384) == [
        "CREATE CONSTRAINT document_id_unique IF NOT EXISTS "
        "FOR (n:Document) REQUIRE n.id IS UNIQUE",
        "CREATE CONSTRAINT chunk_id_unique IF NOT EXISTS FOR (n:Chunk) REQUIRE n.id IS UNIQUE",
        "CREATE CONSTRAINT entity_key_unique IF NOT EXISTS FOR (n:Entity) REQUIRE n.key IS UNIQUE",
        "CREATE INDEX chunk_document_id_lookup IF NOT EXISTS FOR (n:Chunk) ON (n.document_id)",
        "CREATE INDEX relates_to_document_id_lookup IF NOT EXISTS "
        "FOR ()-[r:RELATES_TO]-() ON (r.document_id)",
        "CREATE FULLTEXT INDEX chunk_text_fulltext IF NOT EXISTS FOR (n:Chunk) ON EACH [n.text]",
        "CREATE FULLTEXT INDEX entity_name_fulltext IF NOT EXISTS FOR (n:Entity) ON EACH [n.name]",
        "CREATE VECTOR INDEX chunk_embedding_vector IF NOT EXISTS FOR (n:Chunk) ON (n.embedding) "
        "OPTIONS {indexConfig: {`vector.dimensions`: 384, "
        "`vector.similarity_function`: 'cosine'}}",
    ]
    dialect = Neo4jDialect()
    assert (dialect.vector_index, dialect.chunk_text_index, dialect.entity_name_index) == (
        "chunk_embedding_vector",
        "chunk_text_fulltext",
        "entity_name_fulltext",
    )


class RecordingGateway:
    """Answers SHOW INDEXES from a list; records every statement."""

    def __init__(self, indexes: list[dict[str, Any]]) -> None:
        self.indexes = indexes
        self.statements: list[str] = []

    async def query(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        self.statements.append(query)
        return self.indexes if query.startswith("SHOW INDEXES") else []


VECTOR_384 = {
    "name": "chunk_embedding_vector",
    "type": "VECTOR",
    "options": {
        "indexProvider": "vector-2.0",
        "indexConfig": {"vector.dimensions": 384, "vector.similarity_function": "COSINE"},
    },
}


async def test_neo4j_ensure_schema_runs_each_statement_and_checks_dimensions() -> None:
    gateway = RecordingGateway([])
    await Neo4jDialect().ensure_schema(gateway, 384)  # type: ignore[arg-type]
    ddl = [s for s in gateway.statements if not s.startswith("SHOW")]
    assert ddl == neo4j_schema_statements(384)
    assert gateway.statements[0] == gateway.statements[-1] == Neo4jDialect.SHOW_INDEXES

    existing = RecordingGateway([{"name": "other", "type": "RANGE", "options": {}}, VECTOR_384])
    assert await Neo4jDialect().vector_dimensions(existing) == 384  # type: ignore[arg-type]
    existing.statements.clear()
    with pytest.raises(ConfigError, match=r"EMBEDDING_DIMENSIONS=1024 .* 384-dimensional"):
        await Neo4jDialect().ensure_schema(existing, 1024)  # type: ignore[arg-type]
    assert existing.statements == [Neo4jDialect.SHOW_INDEXES]  # nothing created


def test_scores_are_mapped_to_the_unit_interval() -> None:
    dialect = Neo4jDialect()
    assert [dialect.vector_score(s) for s in (-0.01, 0.5, 1.0000001)] == [0.0, 0.5, 1.0]
    assert dialect.fulltext_scores([4.0, 2.0, 1.0]) == [1.0, 0.5, 0.25]
    assert dialect.fulltext_scores([]) == []
    assert dialect.fulltext_scores([0.0]) == [0.0]


# -- ArcadeDB dialect: the commands, and its HTTP edge against a fake ----------------


def test_arcadedb_commands_declare_properties_before_indexes() -> None:
    commands = arcadedb_schema_commands(16)
    assert commands[-1] == (
        "CREATE INDEX IF NOT EXISTS ON Chunk (embedding) LSM_VECTOR "
        "METADATA {dimensions: 16, similarity: 'COSINE'}"
    )
    first_index = next(i for i, c in enumerate(commands) if c.startswith("CREATE INDEX"))
    assert all(not c.startswith("CREATE INDEX") for c in commands[:first_index])
    assert all(c.startswith("CREATE INDEX") for c in commands[first_index:])
    assert all("IF NOT EXISTS" in c for c in commands)


async def test_arcadedb_http_failures_are_mapped() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if b"boom" in request.content:
            return httpx.Response(500, json={"error": "Internal error", "detail": "no such type"})
        if b"garbage" in request.content:
            return httpx.Response(200, text="<html>")
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        dialect = ArcadeDialect(
            http, http_url="http://db.test/", database="d", user="u", password="p"
        )
        with pytest.raises(GraphQueryError, match="no such type"):
            await dialect.sql("boom")
        with pytest.raises(GraphQueryError, match="HTTP 200"):
            await dialect.sql("garbage")
        with pytest.raises(GraphUnavailable, match="unreachable"):
            await dialect.sql("anything")


async def test_make_dialect() -> None:
    assert isinstance(make_dialect("neo4j"), Neo4jDialect)
    async with httpx.AsyncClient() as http:
        dialect = make_dialect("arcadedb", http=http, http_url="http://x", database="d")
        assert isinstance(dialect, ArcadeDialect)
    with pytest.raises(ConfigError, match="HTTP API"):
        make_dialect("arcadedb")
    with pytest.raises(ConfigError, match="GRAPH_DIALECT"):
        make_dialect("sqlite")  # type: ignore[arg-type]


# -- the parameters of a write, as the driver sees them ------------------------------


def test_a_writes_embeddings_are_sent_whole_but_shown_by_their_size() -> None:
    """The driver formats each statement's parameters for its debug log even when that
    log is off: an embedding must not format as its hundreds of floats."""
    rng = random.Random(7)
    embeddings = [[rng.uniform(-1, 1) for _ in range(384)] for _ in range(20)]
    document = DocumentRecord(
        id="d", title="T", source="d.md", content="c", content_hash="h", metadata={}
    )
    chunks = [
        ChunkRecord(id=f"d:{i}", index=i, text=f"chunk {i}", token_estimate=2, embedding=e)
        for i, e in enumerate(embeddings)
    ]
    statements = replace_statements(
        [DocumentVersion(document, chunks)], dimensions=384, now="2026-01-01", batch_size=500
    )
    sent = [row["embedding"] for st in statements for row in st.params.get("chunks", ())]
    assert sent == embeddings  # every value, in order
    shown = " ".join(repr(st.params) for st in statements)
    assert len(shown) < 400 * len(chunks)  # the floats alone would be ~7,000 a chunk
