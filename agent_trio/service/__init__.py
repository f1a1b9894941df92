"""The service room: the root-nursery task that opens and closes every resource."""

from agent_trio.service._configs import embedding_config, engine_config, llm_config
from agent_trio.service._health import health_report
from agent_trio.service._leaks import InFlight, LeakWatch, Suspect
from agent_trio.service._service import (
    LimiterStats,
    Service,
    ServiceHooks,
    open_service,
    serve_service,
)

__all__ = [
    "InFlight",
    "LeakWatch",
    "LimiterStats",
    "Service",
    "ServiceHooks",
    "Suspect",
    "embedding_config",
    "engine_config",
    "health_report",
    "llm_config",
    "open_service",
    "serve_service",
]
