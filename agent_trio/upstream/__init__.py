"""agent_trio.upstream: httpx clients for the LLM and embedding APIs, and a local embedder.

Both HTTP clients share one :class:`Upstream` machinery per API: a concurrency
limiter adjusted by AIMD, a fair rolling-window rate limiter on the Trio clock that a
429 pauses for every caller, retries with exponential back-off and jitter (stamina,
sleeping on the Trio clock, never holding a slot), per-attempt deadlines, and a
circuit breaker. Errors are those of :mod:`agent_trio._errors`.
"""

from agent_trio._limiter_stats import LimiterStats
from agent_trio.upstream._adaptive import AdaptiveLimits, AdaptiveStats
from agent_trio.upstream._batcher import BatcherStats
from agent_trio.upstream._breaker import BreakerState, BreakerStats, CircuitBreaker
from agent_trio.upstream._connect import UpstreamConfig
from agent_trio.upstream._embedder import Embedder, EmbedderStats, HttpEmbedder, parse_embeddings
from agent_trio.upstream._http import parse_retry_after
from agent_trio.upstream._llm import LlmClient, LlmConfig, open_llm
from agent_trio.upstream._local import LocalEmbedder, import_local_model_libraries
from agent_trio.upstream._messages import (
    Completion,
    Message,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    Usage,
)
from agent_trio.upstream._open import EmbeddingConfig, open_embedder
from agent_trio.upstream._rate import RateLimiter, RateStats
from agent_trio.upstream._retry import use_own_retry_logs
from agent_trio.upstream._upstream import Upstream, UpstreamStats, UpstreamTuning

__all__ = [
    "AdaptiveLimits",
    "AdaptiveStats",
    "BatcherStats",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "Completion",
    "Embedder",
    "EmbedderStats",
    "EmbeddingConfig",
    "HttpEmbedder",
    "LimiterStats",
    "LlmClient",
    "LlmConfig",
    "LocalEmbedder",
    "Message",
    "RateLimiter",
    "RateStats",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallReady",
    "ToolSpec",
    "Upstream",
    "UpstreamConfig",
    "UpstreamStats",
    "UpstreamTuning",
    "Usage",
    "import_local_model_libraries",
    "open_embedder",
    "open_llm",
    "parse_embeddings",
    "parse_retry_after",
    "use_own_retry_logs",
]
