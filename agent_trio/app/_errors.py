"""JSON error bodies: ``{"error": {"code", "message", "field"?}}`` with the right status.

Every exception that reaches Quart is turned into one of these here; bad input is
never a 500. Dependency failures answer 503 with ``Retry-After`` and a message for
the client; what the dependency said (addresses, ports, driver text) goes to the log.
The bodies are :class:`~agent_trio.app._responses.ErrorOut`, the model
``/openapi.json`` documents them with.
"""

from __future__ import annotations

import logging

import trio
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import ResponseSchemaValidationError
from werkzeug.exceptions import HTTPException

from agent_trio._errors import (
    AgentTrioError,
    GraphQueryError,
    GraphUnavailable,
    ResourceClosed,
    UpstreamError,
    UpstreamUnavailable,
)
from agent_trio.app._responses import ErrorDetail, ErrorOut

__all__ = ["RETRY_AFTER", "ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger("agent_trio.app")

#: seconds a client is asked to wait after a 503 that names no better time
RETRY_AFTER = 5

_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    431: "headers_too_large",
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
    body = ErrorOut(error=ErrorDetail(code=code, message=message, field=field))
    response = jsonify(body.model_dump(exclude_none=True))
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response


def _validation_response(exc: ValidationError) -> Response:
    errors = exc.errors()
    if not errors:
        return error_response(422, "validation_error", "the request is not valid")
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) if first["loc"] else None
    message = _problem(first)
    if field is not None:
        message = f"{field}: {message}"
    return error_response(422, "validation_error", message, field=field)


def _problem(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field; this route does not take it"
    if error["type"] == "missing":
        return "required"
    return error["msg"]


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
        return error_response(422, "validation_error", str(inner) or "the request is not valid")

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 400:
            message = "the request is malformed"
        response = error_response(status, code, message)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":  # the 405's Allow, for one
                response.headers[name] = value
        return response

    @app.errorhandler(GraphUnavailable)
    async def _graph_down(exc: GraphUnavailable) -> Response:
        log.warning("graph unavailable: %s", exc)
        return error_response(
            503,
            "graph_unavailable",
            "the graph database is unavailable; try again shortly",
            retry_after=RETRY_AFTER,
        )

    @app.errorhandler(GraphQueryError)
    async def _graph_query(exc: GraphQueryError) -> Response:
        log.error("graph refused a statement: %s", exc)
        return error_response(
            503, "graph_error", "the graph database refused a statement", retry_after=RETRY_AFTER
        )

    @app.errorhandler(UpstreamError)
    async def _upstream(exc: UpstreamError) -> Response:
        log.warning("%s upstream failed: %s", exc.upstream, exc)
        if isinstance(exc, UpstreamUnavailable):
            code, problem = "upstream_unavailable", "is unavailable"
        else:
            code, problem = "upstream_error", "failed"
        return error_response(
            503,
            code,
            f"the {exc.upstream} service {problem}; try again shortly",
            retry_after=exc.retry_after or RETRY_AFTER,
        )

    @app.errorhandler(ResourceClosed)
    async def _closed(exc: ResourceClosed) -> Response:
        return error_response(
            503, "shutting_down", "the service is shutting down", retry_after=RETRY_AFTER
        )

    @app.errorhandler(trio.TooSlowError)
    async def _too_slow(exc: trio.TooSlowError) -> Response:
        return error_response(504, "deadline_exceeded", "the request did not finish in time")

    @app.errorhandler(AgentTrioError)
    async def _ours(exc: AgentTrioError) -> Response:
        log.error("request failed: %s", exc)
        return error_response(
            503, "unavailable", "a service dependency failed", retry_after=RETRY_AFTER
        )

    @app.errorhandler(ResponseSchemaValidationError)
    async def _bad_response(exc: ResponseSchemaValidationError) -> Response:
        log.error("a response does not match its documented model: %s", exc.validation_error)
        return error_response(500, "internal_error", "an unexpected error occurred")

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "an unexpected error occurred")
