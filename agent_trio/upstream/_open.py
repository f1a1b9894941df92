"""Opening the configured embedder: one ``async with`` owns its client or model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from agent_trio._settings import Settings
from agent_trio.upstream._connect import open_upstream
from agent_trio.upstream._embedder import Embedder, HttpEmbedder, LongTexts
from agent_trio.upstream._local import LocalEmbedder, load_local_model, resolve_local_model
from agent_trio.upstream._upstream import UpstreamTuning

__all__ = ["open_embedder"]


@asynccontextmanager
async def open_embedder(
    settings: Settings,
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
    if settings.embedding_provider == "local":
        async with _open_local(settings, max_text_chars or 8_000, long_texts) as local:
            yield local
        return
    provider = settings.embedding_provider
    assert provider in ("jina", "openai")
    assert settings.embedding_base_url is not None
    assert settings.embedding_model is not None
    assert settings.embedding_dimensions is not None
    async with open_upstream(
        "embedding",
        settings,
        base_url=settings.embedding_base_url,
        api_key=settings.embedding_api_key,
        max_concurrency=settings.embedding_max_concurrency,
        rate_limit=settings.embedding_rate_limit_per_minute,
        attempt_timeout=settings.embedding_request_timeout_seconds,
        transport=transport,
        tuning=tuning,
    ) as upstream:
        embedder = HttpEmbedder(
            upstream,
            provider=provider,
            model=settings.embedding_model,
            dimensions=settings.embedding_dimensions,
            batch_size=settings.embedding_batch_size,
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
    settings: Settings, max_text_chars: int, long_texts: LongTexts
) -> AsyncIterator[LocalEmbedder]:
    assert settings.embedding_model is not None
    assert settings.embedding_dimensions is not None
    path = resolve_local_model(settings.embedding_model)
    model = await trio.to_thread.run_sync(load_local_model, path)
    embedder = LocalEmbedder(
        model,
        name=settings.embedding_model,
        dimensions=settings.embedding_dimensions,
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
