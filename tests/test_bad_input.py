"""Bad input of every kind is a 4xx JSON error naming the field, never a 500.

Through the test client, on the real engine. Bodies are sent as raw bytes where
the point is what the bytes are (encodings, escapes a JSON encoder would not write).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from agent_trio._errors import GraphQueryError, GraphUnavailable
from agent_trio.app._body import MAX_DEPTH
from agent_trio.app._models import MAX_OFFSET
from agent_trio.engine import EngineInfo
from tests.support.api import make_app, started_empty

pytestmark = pytest.mark.engine

POST_ROUTES = ["/search/vector", "/search/hybrid", "/search/graph", "/documents"]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def app(engine_info: EngineInfo, tmp_path: Path) -> Quart:
    return make_app(engine_info, tmp_path)


@pytest.fixture
async def client(app: Quart) -> AsyncIterator[Client]:
    async with started_empty(app) as test_app:
        yield test_app.test_client()


async def send(client: Client, path: str, raw: bytes) -> tuple[int, Any]:
    response = await client.post(path, data=raw, headers=JSON)
    assert response.content_type == "application/json", response.content_type
    return response.status_code, await response.get_json()


def assert_error(status: int, body: Any, want: int, code: str, field: str | None) -> None:
    assert status == want, body
    assert body["error"]["code"] == code, body
    assert body["error"].get("field") == field, body
    assert body["error"]["message"]


async def post_documents(client: Client, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = await client.post(
            "/documents", json={"source": f"d{i}.md", "content": f"Document number {i}."}
        )
        assert response.status_code == 201, await response.get_json()
        ids.append((await response.get_json())["id"])
    return ids


# -- query strings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=9223372036854775808", "offset"),
        ("offset=4294967295", "offset"),
        (f"offset={MAX_OFFSET + 1}", "offset"),
        ("limit=2&offset=4294967296", "offset"),
        ("limit=10_0", "limit"),
        ("limit=+5", "limit"),
        ("limit=%205", "limit"),
        ("limit=5.0", "limit"),
        ("limit=", "limit"),
        ("limit=%D9%A5", "limit"),  # an Arabic-Indic five: a digit to int(), not to us
        ("limit=1&limit=2", "limit"),
        ("offset=-1", "offset"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
    ],
)
async def test_document_listing_takes_digits_in_range_only(
    client: Client, query: str, field: str
) -> None:
    response = await client.get(f"/documents?{query}")
    assert_error(response.status_code, await response.get_json(), 422, "validation_error", field)


@pytest.mark.parametrize("offset", ["9223372036854775808", "4294967296", "9" * 5000])
async def test_a_large_offset_is_said_to_be_too_large(client: Client, offset: str) -> None:
    response = await client.get(f"/documents?offset={offset}")
    body = await response.get_json()
    assert_error(response.status_code, body, 422, "validation_error", "offset")
    message = body["error"]["message"]
    assert "too large" in message or str(MAX_OFFSET) in message, message


async def test_paging_is_right_up_to_the_largest_offset(client: Client) -> None:
    ids = await post_documents(client, 3)
    pages = []
    for offset in (0, 1, 2):
        response = await client.get(f"/documents?limit=1&offset={offset}")
        body = await response.get_json()
        assert response.status_code == 200, body
        assert (body["total"], body["limit"], body["offset"]) == (3, 1, offset)
        pages.extend(d["id"] for d in body["documents"])
    assert sorted(pages) == sorted(ids)
    for offset in (3, 2**16, 2**31 - 101, MAX_OFFSET):
        response = await client.get(f"/documents?limit=100&offset={offset}")
        body = await response.get_json()
        assert response.status_code == 200, (offset, body)
        assert body["documents"] == [], offset
        assert (body["total"], body["offset"]) == (3, offset)


# -- bytes that are not UTF-8 JSON ---------------------------------------------------

NOT_UTF8 = {
    "latin-1": '{"query": "caf\xe9", "source": "a", "content": "caf\xe9"}'.encode("latin-1"),
    "utf-16 with BOM": '{"query": "x", "source": "a", "content": "x"}'.encode("utf-16"),
    "utf-16-le": '{"query": "x", "source": "a", "content": "x"}'.encode("utf-16-le"),
    "bare BOM": b"\xff\xfe",
}


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("name", list(NOT_UTF8))
async def test_a_body_that_is_not_utf8_is_400(client: Client, path: str, name: str) -> None:
    status, body = await send(client, path, NOT_UTF8[name])
    assert_error(status, body, 400, "malformed_request", None)
    assert "UTF-8" in body["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"query": NaN}',
        b'{"query": "x", "limit": Infinity}',
        b'{"query": "x",}',
        b"",
        b"\xef\xbb\xbf{}",  # a UTF-8 BOM: RFC 8259 lets us refuse it
        b"[" * 10_000 + b"]" * 10_000,
        b'{"query": ' + b"9" * 5000 + b"}",  # more digits than Python converts
    ],
)
async def test_what_is_not_json_is_400(client: Client, raw: bytes) -> None:
    status, body = await send(client, "/search/vector", raw)
    assert_error(status, body, 400, "malformed_request", None)


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 1000, 100_000])
async def test_nesting_is_bounded(client: Client, depth: int) -> None:
    # the body itself is one level; metadata's value the second
    nested = "[" * (depth - 2) + "]" * (depth - 2)
    raw = f'{{"source": "deep.md", "content": "Deep.", "metadata": {{"k": {nested}}}}}'
    status, body = await send(client, "/documents", raw.encode())
    if depth <= MAX_DEPTH:
        assert status == 201, body
    else:
        assert_error(status, body, 400, "malformed_request", None)
        assert f"deeper than {MAX_DEPTH}" in body["error"]["message"]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (r'{"k": "\ud800"}', "metadata.k"),
        (r'{"\udfff": 1}', "metadata"),
        (r'{"k": ["ok", {"deeper": "a\ud83dz"}]}', "metadata.k.1.deeper"),
    ],
)
async def test_a_lone_surrogate_anywhere_is_422_naming_where(
    client: Client, metadata: str, field: str
) -> None:
    raw = f'{{"source": "s.md", "content": "Text.", "metadata": {metadata}}}'
    status, body = await send(client, "/documents", raw.encode())
    assert_error(status, body, 422, "validation_error", field)
    assert "surrogate" in body["error"]["message"]
    listing = await (await client.get("/documents")).get_json()
    assert listing["total"] == 0


async def test_a_surrogate_pair_is_a_character(client: Client) -> None:
    smile = rb"\ud83d\ude00"
    raw = b'{"source": "s.md", "content": "A smile: %s.", "metadata": {"e": "%s"}}' % (smile, smile)
    status, body = await send(client, "/documents", raw)
    assert status == 201, body
    stored = await (await client.get(f"/documents/{body['id']}")).get_json()
    assert stored["metadata"] == {"e": "\U0001f600"}
    assert "\U0001f600" in stored["content"]


async def test_a_number_beyond_a_float_is_422(client: Client) -> None:
    raw = b'{"source": "s.md", "content": "x", "metadata": {"big": 1e400}}'
    status, body = await send(client, "/documents", raw)
    assert_error(status, body, 422, "validation_error", "metadata.big")


# -- one text rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/documents", {"source": "a\x00b.md", "content": "x"}, "source"),
        ("/documents", {"source": "a.md", "title": "T\x00", "content": "x"}, "title"),
        ("/documents", {"source": "a.md", "content": "x\x00y"}, "content"),
        ("/search/vector", {"query": "q\x00"}, "query"),
        ("/search/graph", {"query": "\x00"}, "query"),
    ],
)
async def test_no_text_field_holds_nul(client: Client, path: str, body: Any, field: str) -> None:
    status, error = await send(client, path, json.dumps(body).encode())
    assert_error(status, error, 422, "validation_error", field)
    assert "NUL" in error["error"]["message"]
    assert (await (await client.get("/documents")).get_json())["total"] == 0


# -- strict types, null, unknown fields --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/search/vector", {"query": "x", "limit": "10"}, "limit"),
        ("/search/vector", {"query": "x", "limit": True}, "limit"),
        ("/search/graph", {"query": "x", "limit": 10.5}, "limit"),
        ("/search/hybrid", {"query": "x", "limit": "10"}, "limit"),
        ("/search/hybrid", {"query": "x", "text_weight": "0.5"}, "text_weight"),
        ("/search/hybrid", {"query": "x", "text_weight": True}, "text_weight"),
        ("/search/hybrid", {"query": ["x"]}, "query"),
        ("/documents", {"source": 7, "content": "x"}, "source"),
        ("/documents", {"source": "a.md", "content": "x", "metadata": "{}"}, "metadata"),
        ("/documents", {"source": None, "content": "x"}, "source"),
        ("/documents", {"source": "a.md", "content": "x", "metdata": {"k": 1}}, "metdata"),
        ("/search/vector", {"query": "x", "top_k": 3}, "top_k"),
        ("/search/vector", {"query": "x", "": None}, ""),
    ],
)
async def test_types_are_strict_and_fields_known(
    client: Client, path: str, body: Any, field: str
) -> None:
    response = await client.post(path, json=body)
    error = await response.get_json()
    assert_error(response.status_code, error, 422, "validation_error", field)
    assert error["error"]["message"].startswith(f"{field}: ")


async def test_null_counts_as_absent(client: Client) -> None:
    response = await client.post(
        "/search/hybrid", json={"query": "x", "limit": None, "text_weight": None}
    )
    assert response.status_code == 200, await response.get_json()
    response = await client.post(
        "/documents", json={"source": "n.md", "content": "Null title.", "title": None}
    )
    assert response.status_code == 201, await response.get_json()
    stored = await (await client.get(f"/documents/{(await response.get_json())['id']}")).get_json()
    assert stored["title"] == "Null title."  # taken from the text, as when absent
    assert stored["metadata"] == {}


async def test_json_has_one_kind_of_number(client: Client) -> None:
    response = await client.post("/search/hybrid", json={"query": "x", "text_weight": 1})
    assert response.status_code == 200, await response.get_json()
    response = await client.post("/search/graph", json={"query": "x", "limit": 3.0})
    assert response.status_code == 200, await response.get_json()


# -- methods -----------------------------------------------------------------------------


async def test_405_names_the_allowed_methods(client: Client) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert (await response.get_json())["error"]["code"] == "method_not_allowed"
    response = await client.put("/health", data=b"not json")  # 405 before 415
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    response = await client.put("/search/vector", json={"query": "x"})
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.content_type == "application/json"


async def test_options_is_204_with_allow_and_no_body(client: Client) -> None:
    response = await client.options("/search/vector")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert await response.get_data() == b""  # no Content-Type: see test_openapi.py
    missing = await client.options("/no/such/route")
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "not_found"


# -- dependency failures: 503 with Retry-After, no internals --------------------------


async def test_graph_failures_are_503_with_retry_after_and_no_internals(
    app: Quart,
) -> None:
    async def refused() -> None:
        raise GraphQueryError("Invalid input 'SKIP 4294967296' at bolt://127.0.0.1:39123")

    async def down() -> None:
        raise GraphUnavailable(
            "graph database unavailable: Couldn't connect to 127.0.0.1:39123 (reason [Errno 111])"
        )

    app.add_url_rule("/test/refused", "refused", refused)
    app.add_url_rule("/test/down", "down", down)
    async with started_empty(app) as test_app:
        client = test_app.test_client()
        for path, code in [("/test/refused", "graph_error"), ("/test/down", "graph_unavailable")]:
            response = await client.get(path)
            body = await response.get_json()
            assert response.status_code == 503, body
            assert body["error"]["code"] == code
            assert int(response.headers["Retry-After"]) >= 1
            assert "39123" not in body["error"]["message"]
            assert "127.0.0.1" not in body["error"]["message"]
