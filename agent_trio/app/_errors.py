"""JSON error bodies: ``{"error": {"code", "message", "field"?}}`` with the right status.

Every exception that reaches Quart is turned into one of these here; bad input is
never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from pydantic import ValidationError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from agent_trio._errors import (
    AgentTrioError,
    GraphQueryError,
    GraphUnavailable,
    ResourceClosed,
    UpstreamError,
    UpstreamUnavailable,
)

__all__ = ["ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger("agent_trio.app")

_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
    504: "deadline_exceeded",
}


class ApiError(Exception):
    """An error a route raises on purpose, with its status and code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    retry_after: float | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = jsonify({"error": body})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response


def _validation_response(exc: ValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else None
    field = ".".join(str(p) for p in first["loc"]) if first and first["loc"] else None
    message = first["msg"] if first else "invalid request"
    if field:
        message = f"{field}: {message}"
    return error_response(422, "validation_error", message, field=field)


def install_error_handlers(app: Quart) -> None:
    """Register the handlers that turn every exception into a JSON error."""

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return error_response(
            exc.status, exc.code, exc.message, field=exc.field, retry_after=exc.retry_after
        )

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Response:
        inner = exc.validation_error
        if isinstance(inner, ValidationError):
            return _validation_response(inner)
        return error_response(422, "validation_error", str(inner) or "invalid request")

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 400:
            message = "the request body is not valid JSON"
        return error_response(status, code, message)

    @app.errorhandler(GraphUnavailable)
    async def _graph_down(exc: GraphUnavailable) -> Response:
        log.warning("graph unavailable: %s", exc)
        return error_response(503, "graph_unavailable", str(exc), retry_after=5)

    @app.errorhandler(GraphQueryError)
    async def _graph_query(exc: GraphQueryError) -> Response:
        log.error("graph refused a statement: %s", exc)
        return error_response(503, "graph_error", "the graph database refused a statement")

    @app.errorhandler(UpstreamError)
    async def _upstream(exc: UpstreamError) -> Response:
        log.warning("%s upstream failed: %s", exc.upstream, exc)
        code = "upstream_unavailable" if isinstance(exc, UpstreamUnavailable) else "upstream_error"
        return error_response(503, code, str(exc), retry_after=exc.retry_after or 5)

    @app.errorhandler(ResourceClosed)
    async def _closed(exc: ResourceClosed) -> Response:
        return error_response(503, "shutting_down", "the service is shutting down", retry_after=5)

    @app.errorhandler(trio.TooSlowError)
    async def _too_slow(exc: trio.TooSlowError) -> Response:
        return error_response(504, "deadline_exceeded", "the request did not finish in time")

    @app.errorhandler(AgentTrioError)
    async def _ours(exc: AgentTrioError) -> Response:
        log.error("request failed: %s", exc)
        return error_response(503, "unavailable", str(exc), retry_after=5)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "an unexpected error occurred")
