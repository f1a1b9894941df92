"""Access to the running :class:`Service` from a request."""

from __future__ import annotations

from quart import Quart, current_app

from agent_trio.app._errors import ApiError
from agent_trio.app._lifespan import ServiceRunner
from agent_trio.app._metrics import Metrics
from agent_trio.app._streams import OpenStreams
from agent_trio.service import Service

__all__ = [
    "METRICS_KEY",
    "RUNNER_KEY",
    "current_metrics",
    "current_service",
    "current_streams",
    "running_service",
    "streams_of",
]

#: the app's :class:`ServiceRunner`, the one source of truth for the running service
RUNNER_KEY = "agent_trio.runner"
#: the app's :class:`Metrics`
METRICS_KEY = "agent_trio.metrics"


def running_service(app: Quart) -> Service | None:
    """The service ``app`` runs, or ``None`` while it is starting or stopping."""
    runner: ServiceRunner = app.extensions[RUNNER_KEY]
    return runner.service


def current_service() -> Service:
    """The service of the running app; 503 while it is starting or stopping."""
    service = running_service(current_app)
    if service is None:
        raise ApiError(503, "starting", "the service is not ready", retry_after=2)
    return service


def current_metrics() -> Metrics:
    """The metrics of the running app."""
    metrics: Metrics = current_app.extensions[METRICS_KEY]
    return metrics


def streams_of(app: Quart) -> OpenStreams:
    """The open chat streams of ``app``; closing them is how a stop begins."""
    runner: ServiceRunner = app.extensions[RUNNER_KEY]
    return runner.streams


def current_streams() -> OpenStreams:
    """The open chat streams of the running app."""
    return streams_of(current_app)
