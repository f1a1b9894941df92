"""Reading a JSON request body: strict UTF-8, plain JSON, text that can be stored.

Every route that reads ``request.get_json()`` (``validate_request`` does) gets a
body that passed these checks, or the request ends with a JSON error:

- 400 ``malformed_request``: the body is not UTF-8 (a UTF-16 body, ``\\xff\\xfe``,
  Latin-1 bytes), not JSON, or uses what Python's parser accepts beyond JSON
  (``NaN``, ``Infinity``), or nests deeper than :data:`MAX_DEPTH`;
- 422 ``validation_error`` naming the field: a string (or object key) holding a
  lone surrogate escape such as ``"\\ud800"``, which no UTF-8 text can carry, or
  a number too large to be a float (``1e400``).

Checks walk the parsed value with an explicit stack: a deep body costs no recursion.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from quart_trio.wrappers import TrioRequest

from agent_trio.app._errors import ApiError

__all__ = ["MAX_DEPTH", "JsonRequest", "parse_json_body"]

#: objects and arrays nested deeper than this are refused
MAX_DEPTH = 32


class JsonRequest(TrioRequest):
    """The request class of the app: ``get_json`` parses with :func:`parse_json_body`."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            return None
        raw = await self.get_data(cache, False, False)
        try:
            result = parse_json_body(raw)
        except ApiError:
            if not silent:
                raise
            result = None
        if cache:
            self._cached_json[silent] = result
        return result


def parse_json_body(raw: bytes) -> Any:
    """The JSON value of ``raw``, or an :class:`ApiError` saying what is wrong with it."""
    if b"\x00" in raw:  # JSON has no raw NUL: UTF-16 or UTF-32, most likely
        _malformed("the request body is not UTF-8 (it holds NUL bytes); send JSON encoded as UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _malformed(f"the request body is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        _too_deep()
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python reads
        _malformed(f"the request body is not valid JSON: {exc}")
    _check(value)
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _malformed(message: str) -> NoReturn:
    raise ApiError(400, "malformed_request", message)


def _too_deep() -> NoReturn:
    _malformed(f"the request body nests objects or arrays deeper than {MAX_DEPTH} levels")


def _check(value: Any) -> None:
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            _invalid(path, "the number is too large")
        elif isinstance(item, dict | list):
            if len(path) >= MAX_DEPTH:
                _too_deep()
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, path, key=True)
                    stack.append((child, (*path, key)))
            else:
                stack.extend((child, (*path, i)) for i, child in enumerate(item))


def _check_text(text: str, path: tuple[str | int, ...], *, key: bool = False) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        what = "a key of this object" if key else "the text"
        _invalid(path, f"{what} holds a lone surrogate escape (such as \\ud800), not a character")


def _invalid(path: tuple[str | int, ...], problem: str) -> NoReturn:
    field = ".".join(str(p) for p in path) or None
    message = f"{field}: {problem}" if field else problem
    raise ApiError(422, "validation_error", message, field=field)
