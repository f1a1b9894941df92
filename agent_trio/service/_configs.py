"""The settings, mapped onto the small typed configs the rooms below take.

The engine and the upstream clients never see :class:`Settings`: the service,
which owns them, builds their configs here (as one builds httpx's ``Timeout``).
"""

from __future__ import annotations

from agent_trio._settings import Settings
from agent_trio.engine import EngineConfig
from agent_trio.upstream import EmbeddingConfig, LlmConfig, UpstreamConfig

__all__ = ["embedding_config", "engine_config", "llm_config"]


def engine_config(settings: Settings) -> EngineConfig:
    """The embedded engine's config: ``AGENT_DATA_DIR`` and the ``ENGINE_*`` settings."""
    return EngineConfig(
        data_dir=settings.agent_data_dir,
        heap_mb=settings.engine_heap_mb,
        start_timeout=settings.engine_start_timeout_seconds,
        stop_grace=settings.engine_stop_grace_seconds,
    )


def embedding_config(settings: Settings) -> EmbeddingConfig:
    """The embedder's config: ``EMBEDDING_*`` and, for an HTTP provider, ``UPSTREAM_*``."""
    upstream = None
    if settings.embedding_provider != "local":
        assert settings.embedding_base_url is not None  # the provider's default, if unset
        upstream = UpstreamConfig(
            base_url=settings.embedding_base_url,
            api_key=settings.embedding_api_key,
            max_concurrency=settings.embedding_max_concurrency,
            rate_limit_per_minute=settings.embedding_rate_limit_per_minute,
            attempt_timeout=settings.embedding_request_timeout_seconds,
            max_attempts=settings.upstream_max_attempts,
            breaker_threshold=settings.upstream_breaker_threshold,
            breaker_cooldown=settings.upstream_breaker_cooldown_seconds,
        )
    return EmbeddingConfig(
        provider=settings.embedding_provider,
        model=settings.embedding_model,
        dimensions=settings.embedding_dimensions,
        batch_size=settings.embedding_batch_size,
        upstream=upstream,
    )


def llm_config(settings: Settings) -> LlmConfig | None:
    """The LLM's config: ``LLM_*`` and ``UPSTREAM_*``; ``None`` for ``LLM_PROVIDER=none``."""
    if settings.llm_provider == "none":
        return None
    assert settings.llm_base_url is not None  # the provider's default, if unset
    # OpenRouter's optional attribution header
    extra = {"X-Title": "agent-trio"} if settings.llm_provider == "openrouter" else {}
    upstream = UpstreamConfig(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        max_concurrency=settings.llm_max_concurrency,
        rate_limit_per_minute=settings.llm_rate_limit_per_minute,
        attempt_timeout=settings.llm_request_timeout_seconds,
        extra_headers=extra,
        max_attempts=settings.upstream_max_attempts,
        breaker_threshold=settings.upstream_breaker_threshold,
        breaker_cooldown=settings.upstream_breaker_cooldown_seconds,
    )
    return LlmConfig(provider=settings.llm_provider, model=settings.llm_choice, upstream=upstream)
