"""/search/* and /documents through the test client, on the real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from agent_trio.app import create_app, running_service
from agent_trio.engine import EngineInfo
from agent_trio.service import ServiceHooks
from tests.support.service import fake_api_settings, fake_embedder, running

pytestmark = pytest.mark.engine

DOC = {
    "title": "Kestrel Robotics",
    "source": "notes/kestrel.md",
    "content": (
        "# Kestrel Robotics\n\nKestrel Robotics builds the QX-7 telemetry gateway for drones.\n\n"
        "## History\n\nCorvid Systems acquired Kestrel Robotics on June 15, 2022. "
        "Priya Raman joined Halvorsen Labs in August 2023."
    ),
    "metadata": {"tags": ["robotics"], "year": 2022},
}


@pytest.fixture
async def client(engine_info: EngineInfo, tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(
        fake_api_settings(tmp_path, chunk_size=200, chunk_overlap=40),
        hooks=ServiceHooks(engine=engine_info, embedder=fake_embedder),
    )
    async with running(app) as test_app:
        service = running_service(app)
        assert service is not None
        await service.knowledge.delete_all()
        yield test_app.test_client()


async def post(client: Client, path: str, body: Any) -> tuple[int, Any]:
    response = await client.post(path, json=body)
    return response.status_code, await response.get_json()


async def test_post_list_get_document(client: Client) -> None:
    status, created = await post(client, "/documents", DOC)
    assert status == 201, created
    assert created["chunk_count"] >= 2
    assert created["entity_count"] >= 3
    listing = await (await client.get("/documents?limit=10&offset=0")).get_json()
    assert listing["total"] == 1
    assert (listing["limit"], listing["offset"]) == (10, 0)
    [row] = listing["documents"]
    assert row["id"] == created["id"]
    assert row["title"] == "Kestrel Robotics"
    assert row["source"] == "notes/kestrel.md"
    assert row["chunk_count"] == created["chunk_count"]
    assert row["metadata"] == {"tags": ["robotics"], "year": 2022}
    assert row["created_at"]
    document = await (await client.get(f"/documents/{created['id']}")).get_json()
    assert document["content"].startswith("# Kestrel Robotics")
    assert len(document["chunks"]) == created["chunk_count"]
    assert "QX-7" in " ".join(c["content"] for c in document["chunks"])
    again_status, again = await post(client, "/documents", DOC)
    assert again_status == 201
    assert again["id"] == created["id"]
    assert again["status"] == "unchanged"
    assert again["chunk_count"] == created["chunk_count"]
    assert again["entity_count"] == created["entity_count"]
    offset = await (await client.get("/documents?limit=1&offset=1")).get_json()
    assert offset["documents"] == []
    assert offset["total"] == 1


async def test_unknown_document_is_404(client: Client) -> None:
    response = await client.get("/documents/no-such-id")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"


async def test_searches_find_the_document(client: Client) -> None:
    await post(client, "/documents", DOC)
    for kind in ("vector", "hybrid"):
        status, body = await post(client, f"/search/{kind}", {"query": "QX-7 telemetry gateway"})
        assert status == 200, body
        assert body["search_type"] == kind
        assert body["total_results"] == len(body["results"]) >= 1
        assert body["query_time_ms"] >= 0
        top = body["results"][0]
        assert "QX-7" in top["content"]
        assert top["document_title"] == "Kestrel Robotics"
        assert top["document_source"] == "notes/kestrel.md"
        assert 0 <= top["score"] <= 1
        assert set(top) >= {"chunk_id", "document_id", "content", "score", "metadata"}
    status, body = await post(client, "/search/graph", {"query": "Corvid Systems", "limit": 5})
    assert status == 200, body
    assert body["search_type"] == "graph"
    facts = body["graph_results"]
    assert facts
    assert any("Corvid Systems acquired Kestrel Robotics" in f["fact"] for f in facts)
    dated = [f for f in facts if f["valid_at"]]
    assert dated
    assert dated[0]["valid_at"].startswith("2022-06-15")
    assert set(facts[0]) == {
        "fact",
        "uuid",
        "valid_at",
        "invalid_at",
        "source_node_uuid",
        "target_node_uuid",
    }


#: query syntax (Lucene, Cypher) around a word of the document
HOSTILE = [
    "telemetry AND (",
    '"telemetry',
    "telemetry*",
    "content:telemetry ^2 [a TO",
    "telemetry \\",
    "telemetry' }) DETACH DELETE n //",
    "telemetry $id {} MATCH (n) DETACH DELETE n",
]
#: nothing but syntax: no word to search for
NO_WORDS = ["*", "\\", "( ) [ ]", "~^:"]


async def test_hostile_full_text_input_finds_the_right_chunks_and_harms_nothing(
    client: Client,
) -> None:
    _, created = await post(client, "/documents", DOC)
    before = await (await client.get(f"/documents/{created['id']}")).get_json()
    chunks = {c["id"]: c["content"] for c in before["chunks"]}
    for query in HOSTILE + NO_WORDS:
        for kind in ("hybrid", "vector"):
            status, body = await post(client, f"/search/{kind}", {"query": query})
            assert status == 200, (query, body)
            results = body["results"]
            assert results, query  # the document's chunks, ranked
            for hit in results:
                assert hit["document_id"] == created["id"], query
                assert chunks[hit["chunk_id"]] == hit["content"], query
            if query in HOSTILE:
                assert "telemetry" in results[0]["content"], (kind, query)
    for query in ("Corvid Systems AND (", "Corvid Systems' }) DETACH DELETE n //"):
        status, body = await post(client, "/search/graph", {"query": query})
        assert status == 200, (query, body)
        assert any("Corvid Systems acquired" in f["fact"] for f in body["graph_results"]), query
    # the graph is intact: the same document, chunks and facts as before
    listing = await (await client.get("/documents")).get_json()
    assert listing["total"] == 1
    after = await (await client.get(f"/documents/{created['id']}")).get_json()
    assert after == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/search/vector", {}, "query"),
        ("/search/vector", {"query": ""}, "query"),
        ("/search/vector", {"query": "   "}, "query"),
        ("/search/vector", {"query": "x" * 2001}, "query"),
        ("/search/hybrid", {"query": "x", "limit": 0}, "limit"),
        ("/search/hybrid", {"query": "x", "limit": 51}, "limit"),
        ("/search/hybrid", {"query": "x", "limit": "ten"}, "limit"),
        ("/search/hybrid", {"query": "x", "text_weight": 1.5}, "text_weight"),
        ("/search/graph", {"query": 7}, "query"),
        ("/documents", {"content": "text"}, "source"),
        ("/documents", {"source": "a.md", "content": ""}, "content"),
        ("/documents", {"source": "a.md", "content": "x", "metadata": [1]}, "metadata"),
    ],
)
async def test_validation_errors_are_422_naming_the_field(
    client: Client, path: str, body: Any, field: str
) -> None:
    status, error = await post(client, path, body)
    assert status == 422, error
    assert error["error"]["code"] == "validation_error"
    assert error["error"]["field"] == field


async def test_query_string_validation(client: Client) -> None:
    for query, field in [("limit=0", "limit"), ("limit=101", "limit"), ("offset=-1", "offset")]:
        response = await client.get(f"/documents?{query}")
        assert response.status_code == 422
        assert (await response.get_json())["error"]["field"] == field


async def test_malformed_bodies(client: Client) -> None:
    bad_json = await client.post(
        "/search/vector", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert (await bad_json.get_json())["error"]["code"] == "malformed_request"
    not_json = await client.post("/search/vector", data=b"query=x")
    assert not_json.status_code == 415
    assert (await not_json.get_json())["error"]["code"] == "unsupported_media_type"
    array = await client.post("/search/vector", json=["query"])
    assert array.status_code == 422
    huge = await client.post("/documents", json={"source": "a", "content": "x" * 3_000_000})
    assert huge.status_code == 413
    assert (await huge.get_json())["error"]["code"] == "body_too_large"


async def test_bad_front_matter_is_422(client: Client) -> None:
    status, body = await post(
        client, "/documents", {"source": "x.md", "content": "---\ntitle: [unclosed\n---\nbody"}
    )
    assert status == 422, body
    assert body["error"]["code"] == "invalid_document"
    assert body["error"]["field"] == "content"


@pytest.mark.parametrize(
    ("content", "code", "says"),
    [
        (" \n\t \n", "validation_error", "only white space"),
        ("---\ntitle: Only front matter\n---\n", "invalid_document", "no text"),
    ],
)
async def test_a_document_with_no_text_is_422_and_nothing_is_stored(
    client: Client, content: str, code: str, says: str
) -> None:
    before = (await (await client.get("/documents")).get_json())["total"]
    status, body = await post(client, "/documents", {"source": "blank.md", "content": content})
    assert status == 422, body
    assert body["error"]["code"] == code
    assert body["error"]["field"] == "content"
    assert says in body["error"]["message"]
    assert (await (await client.get("/documents")).get_json())["total"] == before
