"""Settings and the fake embeddings API for the upstream tests (virtual time).

The fake (``tests/support/fake_embeddings.py``) is reached through
``httpx.MockTransport``: its handler runs in the calling task, so ``trio.sleep``
inside it is a request's latency on the test's (autojump) clock, and a counter
inside it sees exactly how many requests are in flight at the upstream.
"""

from __future__ import annotations

from typing import Any

import trio

from agent_trio import Settings, load_settings
from agent_trio.upstream import UpstreamTuning
from tests.support.fake_embeddings import FakeEmbeddings, text_vector

DIMS = 8


def vector_for(text: str, dims: int = DIMS) -> list[float]:
    """The vector the fake gives ``text``: it identifies its text."""
    return text_vector(text, dims)


def embedding_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "embedding_provider": "openai",
        "embedding_base_url": "http://embeddings.test/v1",
        "embedding_model": "test-embedder",
        "embedding_dimensions": DIMS,
        "embedding_max_concurrency": 3,
        "embedding_rate_limit_per_minute": 0,
        "embedding_batch_size": 10,
        "embedding_request_timeout_seconds": 10.0,
        "upstream_max_attempts": 4,
        "upstream_breaker_threshold": 5,
        "upstream_breaker_cooldown_seconds": 30.0,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def llm_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "llm_base_url": "http://llm.test/v1",
        "llm_api_key": "sk-test",
        "llm_choice": "test-model",
        "llm_max_concurrency": 2,
        "llm_request_timeout_seconds": 10.0,
        "upstream_max_attempts": 3,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def quick_tuning(**overrides: Any) -> UpstreamTuning:
    """Exact times in tests: no margin on the window, no jitter."""
    values: dict[str, Any] = {"rate_margin": 0.0, "backoff_jitter": 0.0, "backoff_initial": 1.0}
    values.update(overrides)
    return UpstreamTuning(**values)


def fake_embeddings(**knobs: Any) -> FakeEmbeddings:
    """The fake embeddings API with this module's dimensions and per-text vectors."""
    return FakeEmbeddings(dimensions=DIMS, vector=text_vector, **knobs)


def live_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this run (to check that nothing is left behind)."""
    found: set[trio.lowlevel.Task] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        found.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return found
