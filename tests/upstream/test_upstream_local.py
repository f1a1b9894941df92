"""The local embedder: the real model shipped in a package, offline, on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent_trio import ConfigError, ResourceClosed, load_settings
from agent_trio.upstream import LocalEmbedder, open_embedder
from agent_trio.upstream._local import resolve_local_model


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.slow
async def test_local_model_embeds_offline_and_ranks_by_meaning() -> None:
    settings = load_settings(_env_file=None, embedding_provider="local")
    documents = [
        "Cats purr and meow mostly to get the attention of the humans they live with.",
        "Central banks raise interest rates to cool demand and bring price growth down.",
        "Trio nurseries make every task a child of a scope that waits for it to finish.",
    ]
    async with open_embedder(settings) as embedder:
        assert isinstance(embedder, LocalEmbedder)
        assert (embedder.provider, embedder.dimensions) == ("local", 384)
        vectors = await embedder.embed(documents)
        query = await embedder.embed_query("how do cats talk to people")
        long_text = await embedder.embed(["word " * 5000])
        stats = embedder.statistics()
    assert len(vectors) == 3
    assert all(len(v) == 384 and math.isclose(_dot(v, v), 1.0, rel_tol=1e-4) for v in vectors)
    scores = [_dot(query, v) for v in vectors]
    assert scores.index(max(scores)) == 0
    assert len(long_text[0]) == 384
    assert stats["counters"]["texts_truncated"] == 1
    assert stats["limiter"]["borrowed"] == 0
    with pytest.raises(ResourceClosed):
        await embedder.embed(["after close"])
    with pytest.raises(ValueError, match="empty"):
        await embedder.embed([""])


async def test_unknown_local_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EMBEDDING_MODEL='no-such-model'"):
        resolve_local_model("no-such-model")
    assert resolve_local_model(str(tmp_path)) == tmp_path
