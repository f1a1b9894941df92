"""The local embedder: the real model shipped in a package, offline, on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent_trio import ConfigError, ResourceClosed, load_settings
from agent_trio.service import embedding_config
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
    async with open_embedder(embedding_config(settings)) as embedder:
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
    assert stats.counters["texts_truncated"] == 1
    assert stats.limiter.borrowed == 0
    with pytest.raises(ResourceClosed):
        await embedder.embed(["after close"])
    with pytest.raises(ValueError, match="empty"):
        await embedder.embed([""])


async def test_unknown_local_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EMBEDDING_MODEL='no-such-model'"):
        resolve_local_model("no-such-model")
    assert resolve_local_model(str(tmp_path)) == tmp_path


@pytest.mark.slow
async def test_the_end_of_a_text_longer_than_the_model_reads_still_counts() -> None:
    settings = load_settings(_env_file=None, embedding_provider="local")
    filler = (
        "Tomatoes like warm soil, steady watering and a stake to lean on as they grow. "
        "Mulch keeps the beds moist and the weeds down through the summer months. "
    ) * 8  # about 300 tokens: more than the model reads in one pass
    rocket = "The rocket engine passed its static fire test two days before the launch."
    bakery = "The bakery on the corner sells rye bread and cinnamon buns every morning."
    async with open_embedder(embedding_config(settings)) as embedder:
        assert isinstance(embedder, LocalEmbedder)
        query = await embedder.embed_query("did the rocket engine pass the static fire test")
        ends_in_rocket, ends_in_bakery, sentence = await embedder.embed(
            [filler + rocket, filler + bakery, rocket]
        )
        stats = embedder.statistics().counters
    assert math.isclose(_dot(ends_in_rocket, ends_in_rocket), 1.0, rel_tol=1e-4)
    # cut at the model's window, both long texts would be the same vector
    assert _dot(ends_in_rocket, ends_in_bakery) < 0.999
    assert _dot(query, ends_in_rocket) > _dot(query, ends_in_bakery) + 0.02
    assert _dot(query, sentence) > _dot(query, ends_in_rocket)  # mostly about tomatoes
    assert stats["texts_windowed"] == 2  # the two long texts; the sentence alone is not


@pytest.mark.slow
async def test_the_model_says_which_chunks_it_reads_whole() -> None:
    from agent_trio.ingest import chunk_text, embedding_text
    from agent_trio.ingest._chunker import fit_chunks

    settings = load_settings(_env_file=None, embedding_provider="local")
    prose = (
        "The turbines at the northern site were inspected in spring, and the crews found "
        "that most of the blades needed only minor repairs before the summer season. "
    ) * 6
    codes = "\n\n".join(
        f"- Part AX-{n:04d}/B{n % 7}: lot 2023-{n % 12 + 1:02d}, bin {n * 37 % 1000}"
        for n in range(40)
    )
    document = f"# Field notes\n\n{prose[:900]}\n\n## Parts\n\n{codes}"
    async with open_embedder(embedding_config(settings)) as embedder:
        assert isinstance(embedder, LocalEmbedder)
        assert embedder.reads_whole(prose[:1000])  # about 200 tokens
        assert not embedder.reads_whole(codes[:1000])  # about 500 tokens
        assert not embedder.reads_whole("word " * 2000)  # past max_text_chars
        chunks = chunk_text(document, size=1000, overlap=200)
        assert not all(embedder.reads_whole(embedding_text(c)) for c in chunks)
        fitted = fit_chunks(
            document, chunks, lambda chunk: embedder.reads_whole(embedding_text(chunk))
        )
        assert all(embedder.reads_whole(embedding_text(c)) for c in fitted)
        await embedder.embed([embedding_text(c) for c in fitted])
        assert embedder.statistics().counters["texts_windowed"] == 0
