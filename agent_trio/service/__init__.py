"""The service room: the root-nursery task that opens and closes every resource."""

from agent_trio.service._engine import engine_config
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
    "engine_config",
    "health_report",
    "open_service",
    "serve_service",
]
