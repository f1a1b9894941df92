"""Opening the configured embedder: one ``async with`` owns its client or model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
import trio

from agent_trio.upstream._connect import UpstreamConfig, open_upstream
from agent_trio.upstream._embedder import Embedder, HttpEmbedder, LongTexts
from agent_trio.upstream._local import LocalEmbedder, load_local_model, resolve_local_model
from agent_trio.upstream._upstream import UpstreamTuning

__all__ = ["EmbeddingConfig", "open_embedder"]


@dataclass(frozen=True)
class EmbeddingConfig:
    """Which embedder: the provider and its model, and the API for the HTTP ones.

    ``upstream`` is required for ``jina`` and ``openai``, unused for ``local``.
    """

    provider: Literal["jina", "openai", "local"]
    model: str
    dimensions: int
    #: texts per request (HTTP providers)
    batch_size: int = 100
    upstream: UpstreamConfig | None = None


@asynccontextmanager
async def open_embedder(
    config: EmbeddingConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    tuning: UpstreamTuning | None = None,
    max_batch_chars: int = 200_000,
    max_text_chars: int | None = None,
    long_texts: LongTexts = "truncate",
) -> AsyncIterator[Embedder]:
    """The configured embedder, closed (and refusing use) when the block ends.

    ``local``: the model is loaded here, in a thread; ``transport`` is not used.
    ``max_text_chars``: longer texts are cut (``long_texts="truncate"``) or refused;
    default 24,000 characters over HTTP (about 8k tokens of English, within the
    providers' limits) and 8,000 locally (the model reads 256 tokens at a time: a
    longer text is embedded in windows, and more windows blur its vector further).
    """
    if config.provider == "local":
        async with _open_local(config, max_text_chars or 8_000, long_texts) as local:
            yield local
        return
    provider = config.provider
    if config.upstream is None:
        raise ValueError(f"the {provider} embedder needs an UpstreamConfig")
    async with open_upstream(
        "embedding", config.upstream, transport=transport, tuning=tuning
    ) as upstream:
        embedder = HttpEmbedder(
            upstream,
            provider=provider,
            model=config.model,
            dimensions=config.dimensions,
            batch_size=config.batch_size,
            max_batch_chars=max_batch_chars,
            max_text_chars=max_text_chars or 24_000,
            long_texts=long_texts,
        )
        try:
            yield embedder
        finally:
            embedder.close()


@asynccontextmanager
async def _open_local(
    config: EmbeddingConfig, max_text_chars: int, long_texts: LongTexts
) -> AsyncIterator[LocalEmbedder]:
    path = resolve_local_model(config.model)
    model = await trio.to_thread.run_sync(load_local_model, path)
    embedder = LocalEmbedder(
        model,
        name=config.model,
        dimensions=config.dimensions,
        max_text_chars=max_text_chars,
        long_texts=long_texts,
    )
    try:
        async with trio.open_nursery() as nursery:  # owns the query batcher
            await nursery.start(embedder.serve_queries)
            yield embedder
            embedder.close()
    finally:
        embedder.close()
