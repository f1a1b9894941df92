"""The Quart-Trio app factory."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart, Response, g, jsonify, request
from quart_cors import cors
from quart_schema import Info, QuartSchema
from quart_trio import QuartTrio

from agent_trio._errors import AgentTrioError
from agent_trio._settings import Settings, load_settings
from agent_trio._version import __version__
from agent_trio.app._asgi import FinishResponses
from agent_trio.app._chat_routes import blueprint as chat_blueprint
from agent_trio.app._context import SERVICE_KEY
from agent_trio.app._errors import error_response, install_error_handlers
from agent_trio.app._knowledge_routes import blueprint as knowledge_blueprint
from agent_trio.app._lifespan import ServiceRunner
from agent_trio.app._metrics import Metrics
from agent_trio.app._process import (
    configure_logging,
    exit_after_failed_startup,
    relay_stop_signals,
)
from agent_trio.service import ServiceHooks, health_report

__all__ = ["create_app"]

log = logging.getLogger("agent_trio.app")

#: routes that need no API key
_OPEN_PATHS = frozenset({"/health", "/metrics"})
#: methods whose body must be JSON
_JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})


def create_app(
    settings: Settings | Callable[[], Settings] | None = None,
    *,
    hooks: ServiceHooks | None = None,
    owns_process: bool = False,
) -> Quart:
    """Build the app. Nothing is opened until the app starts serving.

    ``settings`` is either the settings, a function that loads them at startup,
    or ``None`` to read them from the environment at startup. ``owns_process``
    is for the app an ASGI server runs: it relays SIGTERM as SIGINT and exits
    with one line when startup fails (see ``_process``).
    """
    loader: Callable[[], Settings]
    if isinstance(settings, Settings):
        fixed = settings
        loader = lambda: fixed  # noqa: E731
    else:
        loader = settings or load_settings

    app = QuartTrio("agent_trio")
    app.config["QUART_SCHEMA_CONVERT_CASING"] = False
    QuartSchema(app, info=Info(title="agent-trio", version=__version__))
    runner = ServiceRunner(loader, hooks)
    metrics = Metrics(lambda: runner.service)
    install_error_handlers(app)
    _install_lifespan(app, runner, owns_process=owns_process)
    _install_request_hooks(app, runner, metrics)
    _install_core_routes(app, runner, metrics)
    app.register_blueprint(knowledge_blueprint)
    app.register_blueprint(chat_blueprint)
    app.asgi_app = FinishResponses(app.asgi_app)  # type: ignore[method-assign]
    return app


def _install_lifespan(app: Quart, runner: ServiceRunner, *, owns_process: bool) -> None:
    @app.before_serving
    async def _start() -> None:
        nursery: trio.Nursery = app.nursery  # type: ignore[attr-defined]
        if owns_process:
            configure_logging(os.environ.get("LOG_LEVEL", "INFO").upper())
            nursery.start_soon(relay_stop_signals)
        try:
            service = await runner.start(nursery)
        except* (AgentTrioError, OSError) as group:
            reason = "; ".join(str(exc) for exc in _leaves(group))
            if owns_process:
                exit_after_failed_startup(reason)
            log.error("agent-trio failed to start: %s", reason)
            raise
        settings = service.settings
        app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
        app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.shutdown_timeout_seconds
        if settings.cors_origin_list:
            cors(
                app,
                allow_origin=settings.cors_origin_list,
                allow_headers=["Authorization", "Content-Type"],
                allow_methods=["GET", "POST", "OPTIONS"],
            )
        app.extensions[SERVICE_KEY] = service

    @app.after_serving
    async def _stop() -> None:
        app.extensions.pop(SERVICE_KEY, None)
        await runner.stop()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _install_request_hooks(app: Quart, runner: ServiceRunner, metrics: Metrics) -> None:
    @app.before_request
    async def _guard() -> Response | None:
        g.started = time.perf_counter()
        service = runner.service
        if request.method == "OPTIONS" or service is None:
            return None
        api_key = service.settings.api_key
        if api_key is not None and request.path not in _OPEN_PATHS:
            expected = f"Bearer {api_key.get_secret_value()}"
            if request.headers.get("Authorization", "") != expected:
                response = error_response(401, "unauthorized", "a valid bearer API key is required")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        if request.method in _JSON_METHODS and not request.is_json:
            return error_response(
                415, "unsupported_media_type", "the request body must be application/json"
            )
        return None

    @app.after_request
    async def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        started = getattr(g, "started", None)
        if started is not None:
            metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response


def _install_core_routes(app: Quart, runner: ServiceRunner, metrics: Metrics) -> None:
    @app.get("/health")
    async def health() -> tuple[Response, int]:
        service = runner.service
        if service is None:
            return jsonify({"status": "unhealthy", "version": __version__}), 503
        report = await health_report(service)
        return jsonify(report), 503 if report["status"] == "unhealthy" else 200

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)
