"""Access to the running :class:`Service` from a request."""

from __future__ import annotations

from quart import current_app

from agent_trio.app._errors import ApiError
from agent_trio.service import Service

__all__ = ["SERVICE_KEY", "current_service"]

SERVICE_KEY = "agent_trio.service"


def current_service() -> Service:
    """The service of the running app; 503 while it is starting or stopping."""
    service: Service | None = current_app.extensions.get(SERVICE_KEY)
    if service is None:
        raise ApiError(503, "starting", "the service is not ready", retry_after=2)
    return service
