"""The service room: the root-nursery task that opens and closes every resource."""

from agent_trio.service._configs import embedding_config, engine_config, llm_config
from agent_trio.service._health import health_report
from agent_trio.service._service import (
    LimiterStats,
    Service,
    ServiceHooks,
    open_service,
    serve_service,
)

__all__ = [
    "LimiterStats",
    "Service",
    "ServiceHooks",
    "embedding_config",
    "engine_config",
    "health_report",
    "llm_config",
    "open_service",
    "serve_service",
]
