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

__all__ = [
    "RETRY_AFTER",
    "ApiError",
    "dependency_problem",
    "error_response",
    "install_error_handlers",
]

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


def dependency_problem(exc: AgentTrioError) -> tuple[str, str]:
    """The code and the client's message for one of our errors (a 503, or a stream's
    ``error`` frame); what the dependency said goes to the log, not to the client."""
    if isinstance(exc, GraphUnavailable):
        log.warning("graph unavailable: %s", exc)
        return "graph_unavailable", "the graph database is unavailable; try again shortly"
    if isinstance(exc, GraphQueryError):
        log.error("graph refused a statement: %s", exc)
        return "graph_error", "the graph database refused a statement"
    if isinstance(exc, UpstreamError):
        log.warning("%s upstream failed: %s", exc.upstream, exc)
        if isinstance(exc, UpstreamUnavailable):
            return (
                "upstream_unavailable",
                f"the {exc.upstream} service is unavailable; try again shortly",
            )
        return "upstream_error", f"the {exc.upstream} service failed; try again shortly"
    if isinstance(exc, ResourceClosed):
        return "shutting_down", "the service is shutting down"
    log.error("request failed: %s", exc)
    return "unavailable", "a service dependency failed"


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

    @app.errorhandler(trio.TooSlowError)
    async def _too_slow(exc: trio.TooSlowError) -> Response:
        return error_response(504, "deadline_exceeded", "the request did not finish in time")

    @app.errorhandler(AgentTrioError)
    async def _dependency(exc: AgentTrioError) -> Response:
        code, message = dependency_problem(exc)
        retry_after = exc.retry_after if isinstance(exc, UpstreamError) else None
        return error_response(503, code, message, retry_after=retry_after or RETRY_AFTER)

    @app.errorhandler(ResponseSchemaValidationError)
    async def _bad_response(exc: ResponseSchemaValidationError) -> Response:
        log.error("a response does not match its documented model: %s", exc.validation_error)
        return error_response(500, "internal_error", "an unexpected error occurred")

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "an unexpected error occurred")
