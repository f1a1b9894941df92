"""The OpenAPI document: every route's success and error responses, from their models.

A route documents its success with quart-schema's ``validate_response(Model,
status)``; its request with ``validate_request`` / ``validate_querystring``. The
errors follow from that, added to every operation by :class:`ApiDocumentation`:

- every route: 503 (a dependency is down, or the service is starting or stopping;
  with ``Retry-After``), and 401 (``WWW-Authenticate``) unless it is open without
  the API key;
- a route with a JSON body: 400, 413, 415 and 422; with a query string: 422;
- what only some routes answer, by :func:`document_errors` (404, 504, …).

All of them have the body :class:`ErrorOut`. A route whose success is not JSON
(``/metrics``, ``/chat/stream``) says so with :func:`document_media`; for an event
stream its schema describes each event (OpenAPI 3.1 reads it so).

A request field whose valid values are a setting (``model_choice``: LLM_MODELS)
marks its schema with ``{CHOICES: "<SETTING>"}``; the document served lists the
running service's values as the field's ``enum``.

405 (with ``Allow``) is not an operation's answer: OpenAPI has no place for it;
``docs/API.md`` states it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from quart import Quart
from quart_schema import OpenAPIProvider
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing.rules import Rule

from agent_trio._settings import Settings
from agent_trio.app._context import running_service
from agent_trio.app._responses import ErrorOut

__all__ = ["CHOICES", "OPEN_PATHS", "ApiDocumentation", "document_errors", "document_media"]

F = TypeVar("F", bound=Callable[..., Any])

#: routes that need no API key: health, metrics and the web page (``_page``)
OPEN_PATHS = frozenset({"/health", "/metrics", "/", "/web/chat.css", "/web/chat.js"})

#: the schema keyword that names the setting a field's valid values come from
CHOICES = "x-choices"

#: the settings a field's values may come from, by their variable's name
_SETTING_CHOICES: dict[str, Callable[[Settings], list[str]]] = {
    "LLM_MODELS": lambda settings: settings.llm_model_list,
}

_ERRORS_ATTRIBUTE = "_agent_trio_errors"
_MEDIA_ATTRIBUTE = "_agent_trio_media"

_ERROR_DESCRIPTIONS = {
    400: "Malformed request: the body is not UTF-8 or not JSON, or nests too deeply.",
    401: "A valid bearer API key is required.",
    404: "No such resource.",
    413: "The request body is larger than MAX_BODY_BYTES.",
    415: "The request body must be application/json.",
    422: "The input is not valid; `field` names it.",
    503: "A dependency is down or overloaded, or the service is starting or stopping.",
    504: "The request did not finish in time.",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    503: {
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "required": True,
        }
    },
}


def document_errors(*statuses: int) -> Callable[[F], F]:
    """Document error statuses a route answers beyond those every route of its kind does."""
    unknown = set(statuses) - set(_ERROR_DESCRIPTIONS)
    if unknown:
        raise ValueError(f"no description for error statuses {sorted(unknown)}")

    def decorate(func: F) -> F:
        setattr(func, _ERRORS_ATTRIBUTE, getattr(func, _ERRORS_ATTRIBUTE, set()) | set(statuses))
        return func

    return decorate


def document_media(
    media_type: str,
    description: str,
    status: int = 200,
    *,
    schema: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Document a success response whose body is text of ``media_type``, not JSON;
    ``schema`` describes it (for an event stream: each event), else it is a string."""
    described = schema if schema is not None else {"type": "string"}

    def decorate(func: F) -> F:
        media: dict[int, tuple[str, str, dict[str, Any]]] = getattr(func, _MEDIA_ATTRIBUTE, {})
        setattr(func, _MEDIA_ATTRIBUTE, {**media, status: (media_type, description, described)})
        return func

    return decorate


class ApiDocumentation(OpenAPIProvider):
    """quart-schema's OpenAPI builder, plus the error responses of every operation."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        service = running_service(cast(Quart, self._app))  # a weak proxy of the app
        if service is not None:
            _fill_choices(document, service.settings)
        return document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        error, error_components = self.build_response_object(ErrorOut, None)
        components.update(error_components)
        for path_item in paths.values():
            for operation in path_item.values():
                if "requestBody" in operation:  # the body is never optional
                    operation["requestBody"] = {**operation["requestBody"], "required": True}
                responses: dict[int, Any] = operation["responses"]
                media: dict[int, tuple[str, str, dict[str, Any]]]
                media = getattr(func, _MEDIA_ATTRIBUTE, {})
                for status, (media_type, description, schema) in media.items():
                    responses[status] = {
                        "description": description,
                        "content": {media_type: {"schema": copy.deepcopy(schema)}},
                    }
                for status in sorted(self._error_statuses(rule, func)):
                    if status not in responses:
                        described = {**error, "description": _ERROR_DESCRIPTIONS[status]}
                        responses[status] = described
                for status, headers in _HEADERS.items():
                    if status in responses:
                        responses[status] = {**responses[status], "headers": headers}
                operation["responses"] = dict(sorted(responses.items()))
        return paths, components

    def _error_statuses(self, rule: Rule, func: Callable[..., Any]) -> Iterable[int]:
        statuses = {503} | getattr(func, _ERRORS_ATTRIBUTE, set())
        if rule.rule not in OPEN_PATHS:
            statuses.add(401)
        if getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None:
            statuses |= {400, 413, 415, 422}
        if getattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None) is not None:
            statuses.add(422)
        return statuses


def _fill_choices(document: dict[str, Any], settings: Settings) -> None:
    """Give each schema marked with :data:`CHOICES` the setting's values as its ``enum``."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            setting = node.pop(CHOICES, None)
            if isinstance(setting, str):
                node["enum"] = _SETTING_CHOICES[setting](settings)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
