"""/openapi.json documents every answer, and the served API keeps to it.

The last test runs schemathesis (every check, fixed seed, bounded examples) against
the app served by Hypercorn on the real engine, as an outside client would.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agent_trio.app._openapi import OPEN_PATHS
from agent_trio.engine import EngineInfo
from tests.support.api import make_app, served, started_empty

pytestmark = pytest.mark.engine

BODY_ERRORS = {"400", "413", "415", "422"}
OPERATIONS = {
    ("get", "/health"),
    ("get", "/metrics"),
    ("post", "/search/vector"),
    ("post", "/search/hybrid"),
    ("post", "/search/graph"),
    ("get", "/documents"),
    ("get", "/documents/{document_id}"),
    ("post", "/documents"),
    ("post", "/chat"),
    ("post", "/chat/stream"),
    ("get", "/sessions/{session_id}"),
    ("get", "/chat/models"),
    ("get", "/"),
    ("get", "/web/chat.css"),
    ("get", "/web/chat.js"),
}


@pytest.fixture
async def schema(engine_info: EngineInfo, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with started_empty(make_app(engine_info, tmp_path)) as test_app:
        response = await test_app.test_client().get("/openapi.json")
        assert response.status_code == 200
        yield await response.get_json()


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


def error_ref(response: dict[str, Any]) -> dict[str, Any]:
    return response["content"]["application/json"]["schema"]


async def test_every_route_is_documented_with_its_answers(schema: dict[str, Any]) -> None:
    documented = operations(schema)
    assert set(documented) >= OPERATIONS
    for key, operation in documented.items():
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), key
        assert "503" in statuses, key
        assert operation["responses"]["503"]["headers"]["Retry-After"]["required"], key
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True, key
            assert statuses >= BODY_ERRORS, key
            for status in BODY_ERRORS:
                assert error_ref(operation["responses"][status])["title"] == "ErrorOut"
        assert ("401" in statuses) == (key[1] not in OPEN_PATHS), key
    assert "404" in documented["get", "/documents/{document_id}"]["responses"]
    assert "201" in documented["post", "/documents"]["responses"]
    assert "404" in documented["get", "/sessions/{session_id}"]["responses"]
    assert "504" in documented["post", "/chat"]["responses"]
    stream = documented["post", "/chat/stream"]["responses"]["200"]
    assert set(stream["content"]) == {"text/event-stream"}
    assert "422" in documented["get", "/documents"]["responses"]
    metrics = documented["get", "/metrics"]["responses"]["200"]
    assert set(metrics["content"]) == {"text/plain"}
    page = documented["get", "/"]["responses"]["200"]
    assert set(page["content"]) == {"text/html"}
    health = documented["get", "/health"]["responses"]
    assert error_ref(health["503"]) == error_ref(health["200"])


async def test_request_models_are_in_the_document(schema: dict[str, Any]) -> None:
    documented = operations(schema)
    body = documented["post", "/search/hybrid"]["requestBody"]["content"]["application/json"]
    properties = body["schema"]["properties"]
    assert body["schema"]["additionalProperties"] is False
    assert body["schema"]["required"] == ["query"]
    assert {"type": "null"} in properties["limit"]["anyOf"]  # null counts as absent
    assert {"type": "null"} in properties["text_weight"]["anyOf"]
    chat = documented["post", "/chat"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["additionalProperties"] is False
    choice = chat["properties"]["model_choice"]["anyOf"]
    assert {"type": "null"} in choice
    assert [c["enum"] for c in choice if "enum" in c] == [["extractive"]]  # LLM_MODELS
    event = documented["post", "/chat/stream"]["responses"]["200"]["content"]["text/event-stream"]
    assert "end" in event["schema"]["properties"]["event"]["enum"]
    offset = next(p for p in documented["get", "/documents"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 2**31 - 1


async def test_what_the_server_and_the_app_answer_on_the_wire(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with (
        served(make_app(engine_info, tmp_path)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        options = await http.options("/search/hybrid")
        assert options.status_code == 204
        assert "content-type" not in options.headers
        assert set(options.headers["allow"].split(", ")) == {"POST", "OPTIONS"}
        wrong = await http.delete("/documents")
        assert wrong.status_code == 405
        assert wrong.headers["content-type"] == "application/json"
        assert "POST" in wrong.headers["allow"]
        latin1 = await http.post(
            "/search/vector",
            content='{"query": "caf\xe9"}'.encode("latin-1"),
            headers={"content-type": "application/json"},
        )
        assert latin1.status_code == 400
        assert latin1.json()["error"]["code"] == "malformed_request"
        # what the server answers before the app, as docs/API.md says: no body
        too_long = await http.get("/documents", headers={"x-padding": "a" * 100_000})
        assert too_long.status_code == 431
        assert too_long.content == b""


@pytest.mark.slow
async def test_schemathesis_finds_no_failure(engine_info: EngineInfo, tmp_path: Path) -> None:
    async with served(make_app(engine_info, tmp_path)) as url:
        command = [
            *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
            *("run", f"{url}/openapi.json"),
            *("--checks", "all", "--seed", "20261201", "--max-examples", "8"),
            *("--workers", "1", "--request-timeout", "120"),
        ]
        with trio.fail_after(300):
            result = await trio.run_process(
                command, cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False
            )
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    print(output)  # the phases, their timings and case counts: pytest -rP shows them
    assert result.returncode == 0, output
    assert f"Tested: {len(OPERATIONS)}" in output, output  # every operation
    assert "passed" in output.rsplit("SUMMARY", 1)[-1], output
