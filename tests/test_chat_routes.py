"""/chat, /chat/stream and /sessions/{id} without an LLM: extractive answers, real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_trio.engine import EngineInfo
from tests.chat_support import ChatApp, chat_settings, limiters_idle, open_chat_app

pytestmark = pytest.mark.engine


@pytest.fixture
async def app(engine_info: EngineInfo, tmp_path: Path) -> AsyncIterator[ChatApp]:
    async with open_chat_app(chat_settings(tmp_path), engine_info) as chat_app:
        yield chat_app


async def test_chat_answers_from_the_corpus_with_sources(app: ChatApp) -> None:
    status, body = await app.post("/chat", {"message": "Who acquired Kestrel Labs?"})
    assert status == 200, body
    first = body["message"].split(". ")[0]
    assert "Corvid Systems acquired Kestrel Labs" in first, body["message"]
    assert "extractive" in body["message"]
    assert body["metadata"]["model"] == "extractive"
    assert body["metadata"]["search_type"] == "hybrid"
    assert body["sources"], body
    top = body["sources"][0]
    assert set(top) == {"document_id", "document_title", "document_source", "chunk_id", "score"}
    assert "Kestrel" in " ".join(s["document_title"] for s in body["sources"])
    assert [t["tool_name"] for t in body["tools_used"]] == ["hybrid_search", "graph_search"]
    assert body["session_id"]
    assert body["message_id"]
    assert limiters_idle(app.service)


async def test_stream_frames_in_order_for_a_data_only_client(app: ChatApp) -> None:
    status, frames = await app.stream(
        {"message": "When did Corvid Systems acquire Kestrel Labs?", "session_id": None}
    )
    assert status == 200
    types = [f["type"] for f in frames]
    assert types[:2] == ["session", "model"]
    assert types[-2:] == ["tools", "end"]
    assert {"tool_call", "sources", "text"} <= set(types)
    assert frames[1]["model_used"] == "extractive"
    session_id = frames[0]["session_id"]
    assert frames[-1]["session_id"] == session_id
    text = "".join(f["content"] for f in frames if f["type"] == "text")
    assert "15 June 2022" in text.split(". ")[0], text
    assert len([f for f in frames if f["type"] == "text"]) > 1  # streamed in pieces
    calls = [f for f in frames if f["type"] == "tool_call"]
    assert frames[-2]["tools"] == [
        {k: c[k] for k in ("tool_name", "args", "tool_call_id")} for c in calls
    ]
    [sources] = [f["sources"] for f in frames if f["type"] == "sources"]
    assert sources
    assert limiters_idle(app.service)


async def test_stream_wire_format_names_each_event(app: ChatApp) -> None:
    status, headers, text = await app.stream_raw({"message": "QX-7 gateway"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    blocks = [b for b in text.split("\n\n") if b]
    first = blocks[0].split("\n")
    assert first[0] == "event: session"
    assert first[1].startswith('data: {"type": "session"')
    assert blocks[-1].startswith("event: end\ndata: ")


async def test_a_session_keeps_its_turns(app: ChatApp) -> None:
    status, first = await app.post(
        "/chat",
        {
            "message": "Who leads Corvid Telemetry?",
            "session_id": "s-turns",
            "user_id": "u-7",
            "metadata": {"client": "test"},
        },
    )
    assert status == 200, first
    assert first["session_id"] == "s-turns"
    status, second = await app.post(
        "/chat", {"message": "Where is it based?", "session_id": "s-turns", "search_type": "vector"}
    )
    assert status == 200, second
    assert second["metadata"]["search_type"] == "vector"
    assert [t["tool_name"] for t in second["tools_used"]] == ["vector_search"]
    response = await app.client.get("/sessions/s-turns")
    assert response.status_code == 200
    session = await response.get_json()
    assert session["id"] == "s-turns"
    assert session["user_id"] == "u-7"
    assert session["metadata"] == {"client": "test"}
    assert session["created_at"] <= session["updated_at"]
    messages = session["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert messages[0]["content"] == "Who leads Corvid Telemetry?"
    assert messages[1]["id"] == first["message_id"]
    assert messages[1]["content"] == first["message"]
    assert messages[3]["id"] == second["message_id"]
    assert messages[1]["tool_calls"] == first["tools_used"]
    assert set(messages[0]) == {"id", "role", "content", "status", "created_at", "tool_calls"}


async def test_unknown_session_is_404(app: ChatApp) -> None:
    response = await app.client.get("/sessions/never-seen")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({}, "message"),
    ({"message": ""}, "message"),
    ({"message": "   "}, "message"),
    ({"message": "x" * 32_001}, "message"),
    ({"message": 7}, "message"),
    ({"message": "hi", "session_id": 12}, "session_id"),
    ({"message": "hi", "session_id": "../../etc/passwd"}, "session_id"),
    ({"message": "hi", "session_id": "x" * 500}, "session_id"),
    ({"message": "hi", "search_type": "magic"}, "search_type"),
    ({"message": "hi", "metadata": [1, 2]}, "metadata"),
    ({"message": "hi", "user_id": 5}, "user_id"),
    ({"message": "hi", "model_choice": "gpt-9"}, "model_choice"),
]


async def test_bad_bodies_are_422_naming_the_field(app: ChatApp) -> None:
    for path in ("/chat", "/chat/stream"):
        for body, field in BAD_BODIES:
            response = await app.client.post(path, json=body)
            assert response.status_code == 422, (path, body)
            error = (await response.get_json())["error"]
            assert error["code"] == "validation_error"
            assert error["field"] == field, (path, body, error)
            assert error["message"]
        response = await app.client.post(
            path, data=b'{"message": ', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert (await response.get_json())["error"]["code"] == "malformed_request"
    assert limiters_idle(app.service)


async def test_nulls_count_as_absent_and_model_choice_is_checked(app: ChatApp) -> None:
    body = {
        "message": "QX-9",
        "session_id": None,
        "user_id": None,
        "metadata": None,
        "search_type": None,
        "model_choice": "extractive",
    }
    status, answer = await app.post("/chat", body)
    assert status == 200, answer
    assert answer["metadata"] == {"search_type": "hybrid", "model": "extractive", "steps": 1}


async def test_nothing_found_is_said_plainly(app: ChatApp) -> None:
    status, answer = await app.post("/chat", {"message": "zzzz qqqq"})
    assert status == 200
    assert answer["message"].startswith("I found nothing")
    assert answer["sources"] == []  # nothing was quoted
