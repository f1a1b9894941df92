"""/chat, /chat/stream and /sessions/{id} without an LLM: extractive answers, real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

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
