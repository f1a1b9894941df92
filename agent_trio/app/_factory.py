"""The Quart-Trio app factory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart, Response, g, request
from quart.globals import request_ctx
from quart_cors import cors
from quart_schema import Info, QuartSchema, validate_response
from quart_trio import QuartTrio

from agent_trio._errors import AgentTrioError, leaf_errors
from agent_trio._logs import current_request
from agent_trio._settings import Settings, load_settings
from agent_trio._version import __version__
from agent_trio.app._asgi import FinishResponses
from agent_trio.app._body import JsonRequest
from agent_trio.app._chat_routes import blueprint as chat_blueprint
from agent_trio.app._context import METRICS_KEY, RUNNER_KEY
from agent_trio.app._errors import RETRY_AFTER, error_response, install_error_handlers
from agent_trio.app._knowledge_routes import blueprint as knowledge_blueprint
from agent_trio.app._lifespan import ServiceRunner
from agent_trio.app._metrics import Metrics
from agent_trio.app._openapi import OPEN_PATHS, ApiDocumentation, document_media
from agent_trio.app._page import blueprint as page_blueprint
from agent_trio.app._process import (
    configure_logging,
    keep_sigint_for_trio,
    relay_sigterm,
    report_failed_startup,
    tune_garbage_collection,
)
from agent_trio.app._request_log import REQUEST_ID_HEADER, RequestLog
from agent_trio.app._responses import HealthOut
from agent_trio.service import ServiceHooks, health_report

__all__ = ["create_app"]

log = logging.getLogger("agent_trio.app")

#: methods whose body must be JSON
_JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _App(QuartTrio):
    """Quart-Trio with our JSON body reading, and ``OPTIONS`` answered 204 with ``Allow``."""

    request_class = JsonRequest

    async def make_default_options_response(self) -> Response:
        assert request_ctx.url_adapter is not None
        methods = request_ctx.url_adapter.allowed_methods()
        response = self.response_class(b"", status=204, headers={"Allow": ", ".join(methods)})
        del response.headers["Content-Type"]
        return response


def create_app(
    settings: Settings | Callable[[], Settings] | None = None,
    *,
    hooks: ServiceHooks | None = None,
    owns_process: bool = False,
    serve_command: bool = False,
) -> Quart:
    """Build the app. Nothing is opened until the app starts serving.

    ``settings`` is either the settings, a function that loads them at startup,
    or ``None`` to read them from the environment at startup. ``owns_process``
    is for the app an ASGI server runs: it configures logging from the settings
    and says in one line why a startup failed. Without ``serve_command`` (the
    ``hypercorn`` command) it also makes SIGTERM and SIGINT stop the server; with
    it, ``python -m agent_trio serve`` does that itself (see ``_process``).
    """
    loader: Callable[[], Settings]
    if isinstance(settings, Settings):
        fixed = settings
        loader = lambda: fixed  # noqa: E731
    else:
        loader = settings or load_settings

    app = _App("agent_trio")
    app.config["QUART_SCHEMA_CONVERT_CASING"] = False
    QuartSchema(
        app,
        info=Info(title="agent-trio", version=__version__),
        openapi_provider_class=ApiDocumentation,
    )
    runner = ServiceRunner(hooks)
    app.extensions[RUNNER_KEY] = runner
    metrics = Metrics(lambda: runner.service)
    app.extensions[METRICS_KEY] = metrics
    install_error_handlers(app)
    hypercorn_command = owns_process and not serve_command
    if hypercorn_command:
        keep_sigint_for_trio()  # before trio.run: Hypercorn imports the app first
    _install_lifespan(
        app,
        runner,
        metrics,
        loader,
        owns_process=owns_process,
        hypercorn_command=hypercorn_command,
    )
    _install_request_hooks(app, runner, metrics)
    _install_core_routes(app, runner, metrics)
    app.register_blueprint(knowledge_blueprint)
    app.register_blueprint(chat_blueprint)
    app.register_blueprint(page_blueprint)
    app.asgi_app = FinishResponses(RequestLog(app.asgi_app))  # type: ignore[method-assign]
    return app


def _install_lifespan(
    app: Quart,
    runner: ServiceRunner,
    metrics: Metrics,
    load: Callable[[], Settings],
    *,
    owns_process: bool,
    hypercorn_command: bool,
) -> None:
    @app.before_serving
    async def _start() -> None:
        nursery: trio.Nursery = app.nursery  # type: ignore[attr-defined]
        if hypercorn_command:
            nursery.start_soon(relay_sigterm, runner.streams.close)
        try:
            settings = load()
            if owns_process:
                configure_logging(settings.log_level, settings.log_format)
            service = await runner.start(nursery, settings)
        except* (AgentTrioError, OSError) as group:
            reason = "; ".join(str(exc) for exc in leaf_errors(group))
            if owns_process:
                report_failed_startup(reason, quiet_traceback=hypercorn_command)
            else:
                log.error("agent-trio failed to start: %s", reason)
            raise
        metrics.attach(service)
        if owns_process:
            tune_garbage_collection()
        settings = service.settings
        app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
        app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.shutdown_timeout_seconds
        if settings.cors_origin_list:
            cors(
                app,
                allow_origin=settings.cors_origin_list,
                allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
                allow_methods=["GET", "POST", "OPTIONS"],
                expose_headers=[REQUEST_ID_HEADER],  # a page may show it, to quote it
            )

    @app.after_serving
    async def _stop() -> None:
        await runner.stop()


def _install_request_hooks(app: Quart, runner: ServiceRunner, metrics: Metrics) -> None:
    @app.before_request
    async def _guard() -> Response | None:
        g.started = time.perf_counter()
        context = current_request.get()
        if context is not None and request.url_rule is not None:
            context.route = request.url_rule.rule
        service = runner.service
        if request.method == "OPTIONS" or service is None:
            return None
        api_key = service.settings.api_key
        if api_key is not None and request.path not in OPEN_PATHS:
            expected = f"Bearer {api_key.get_secret_value()}"
            if request.headers.get("Authorization", "") != expected:
                response = error_response(401, "unauthorized", "a valid bearer API key is required")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        if (
            request.method in _JSON_METHODS
            and request.routing_exception is None  # 404 and 405 come first
            and not request.is_json
        ):
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
    @validate_response(HealthOut, 200)
    @validate_response(HealthOut, 503)
    async def health() -> tuple[dict[str, Any], int, dict[str, str]]:
        """The service's health; cheap: no search, no LLM call."""
        service = runner.service
        if service is None:
            report: dict[str, Any] = {
                "status": "unhealthy",
                "version": __version__,
                "uptime_seconds": 0.0,
                "checks": {"service": {"status": "error", "detail": "the service is not running"}},
                "limiters": {},
            }
        else:
            report = await health_report(service)
        if report["status"] == "unhealthy":
            return report, 503, {"Retry-After": str(RETRY_AFTER)}
        return report, 200, {}

    @app.get("/metrics")
    @document_media("text/plain", "Prometheus text exposition.")
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)
