"""Retrieval quality on the sample corpus with the local (offline) embedding model.

The bar: hybrid search puts a relevant chunk in its top five for at least nine of
the ten questions in ``tests/retrieval_questions.py``, which are worded differently
from the text that answers them. Vector and full-text search alone are measured on
the same questions and reported, so a regression in either side shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_trio import Settings, load_settings
from agent_trio.engine import EngineInfo
from agent_trio.service import Service, ServiceHooks, open_service
from tests._engine import own_database
from tests.retrieval_questions import CORPUS_DIR, QUESTIONS, relevant

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture
def engine(engine_info: EngineInfo) -> Iterator[EngineInfo]:
    with own_database(engine_info, "retrieval") as info:  # 384-dimensional vectors
        yield info


@pytest.fixture
async def service(engine: EngineInfo, tmp_path: Path) -> AsyncIterator[Service]:
    settings: Settings = load_settings(agent_data_dir=tmp_path, embedding_provider="local")
    async with open_service(settings, hooks=ServiceHooks(engine=engine)) as service:
        summary = await service.ingestor.ingest_paths([CORPUS_DIR], clean=True)
        assert summary.failed == []
        assert summary.documents == len(list(CORPUS_DIR.iterdir()))
        yield service


async def test_hybrid_finds_a_relevant_chunk_for_nine_of_ten(service: Service) -> None:
    hits = {"hybrid": 0, "vector": 0, "fulltext": 0}
    missed = []
    for question in QUESTIONS:
        for kind in hits:
            results = await getattr(service.searcher, kind)(question.question, 5)
            found = any(relevant(r, question) for r in results)
            hits[kind] += found
            if kind == "hybrid" and not found:
                missed.append(question.question)
    print(f"top-5 hits out of {len(QUESTIONS)}: {hits}")
    assert len(QUESTIONS) == 10
    assert hits["hybrid"] >= 9, f"hybrid missed: {missed}"
