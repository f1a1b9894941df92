"""Schema creation on the real engine: idempotent, and a dimension mismatch is refused."""

from __future__ import annotations

import httpx
import pytest

from agent_trio import ConfigError, GraphQueryError, GraphUnavailable
from agent_trio.engine import EngineInfo
from agent_trio.graph import ArcadeDialect, GraphGateway, KnowledgeStore

from .kb_support import DIMENSIONS

pytestmark = pytest.mark.engine

EXPECTED_INDEXES = {
    "Document[id]": "LSM_TREE",
    "Chunk[id]": "LSM_TREE",
    "Chunk[document_id]": "LSM_TREE",
    "Entity[key]": "LSM_TREE",
    "Chunk[text]": "FULL_TEXT",
    "Entity[name]": "FULL_TEXT",
    "Chunk[embedding]": "LSM_VECTOR",
    "RELATES_TO[document_id]": "LSM_TREE",
}


async def indexes(dialect: ArcadeDialect) -> dict[str, tuple[str, bool]]:
    rows = await dialect.sql("SELECT name, indexes FROM schema:types")
    return {
        index["name"]: (index["type"], index["unique"])
        for row in rows
        for index in row.get("indexes") or []
    }


async def test_ensure_schema_twice_changes_nothing(
    store: KnowledgeStore, dialect: ArcadeDialect, gateway: GraphGateway
) -> None:
    before = await indexes(dialect)
    await store.ensure_schema()
    await store.ensure_schema()
    after = await indexes(dialect)
    assert after == before
    assert {name: kind for name, (kind, _) in after.items()} == EXPECTED_INDEXES
    assert {name for name, (_, unique) in after.items() if unique} == {
        "Document[id]",
        "Chunk[id]",
        "Entity[key]",
    }
    assert await dialect.vector_dimensions(gateway) == DIMENSIONS


async def test_other_dimensions_fail_with_a_clear_message(
    gateway: GraphGateway, dialect: ArcadeDialect
) -> None:
    wrong = KnowledgeStore(gateway, dialect, dimensions=DIMENSIONS * 2)
    with pytest.raises(ConfigError) as info:
        await wrong.ensure_schema()
    message = str(info.value)
    assert f"EMBEDDING_DIMENSIONS={DIMENSIONS * 2}" in message
    assert f"{DIMENSIONS}-dimensional" in message
    assert "Chunk[embedding]" in message
    assert await dialect.vector_dimensions(gateway) == DIMENSIONS  # left as it was


async def test_a_refused_schema_command_is_a_query_error(dialect: ArcadeDialect) -> None:
    with pytest.raises(GraphQueryError, match="CREATE INDEX"):
        await dialect.sql("CREATE INDEX IF NOT EXISTS ON NoSuchType (x) UNIQUE")


async def test_wrong_credentials_are_unavailable(
    engine_info: EngineInfo, kb_database: str, http: httpx.AsyncClient
) -> None:
    bad = ArcadeDialect(
        http,
        http_url=engine_info.http_url,
        database=kb_database,
        user=engine_info.user,
        password="not-the-password",
    )
    with pytest.raises(GraphUnavailable, match="refused the credentials"):
        await bad.sql("SELECT 1")
