"""Request bodies and query strings of the HTTP API, validated by quart-schema.

The rules every body follows (subclass :class:`Body` and they hold for a new route):

- types are strict: ``"10"`` and ``true`` are not integers, ``"0.5"`` is not a number
  (but ``10.0`` is the integer 10: JSON has one kind of number, as JSON Schema says);
- an optional field sent as JSON ``null`` counts as absent (its default applies);
- a field the route does not know is refused (422 naming it), so a misspelt
  ``"metdata"`` is not silently dropped;
- text fields (:data:`Text`, :data:`NonBlankText`) never hold NUL (U+0000).

Query strings (:class:`Query`) take integers written in ASCII digits only: no sign,
no ``_``, no white space, no other script's digits.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_OFFSET",
    "Body",
    "DocumentIn",
    "DocumentListQuery",
    "GraphSearchIn",
    "HybridSearchIn",
    "Int",
    "NonBlankText",
    "Query",
    "QueryInt",
    "SearchIn",
    "Text",
]

#: the largest ``offset`` of a listing (the engine counts rows in 32-bit integers)
MAX_OFFSET = 2**31 - 1

_NO_NUL = r"^[^\x00]*$"
_NOT_BLANK_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "text must not contain NUL characters (U+0000)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("text_blank", "text must not be empty or only white space")
    return value


def _strip(value: str) -> str:
    return value.strip()


#: text without NUL
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": _NO_NUL})]
#: text without NUL that holds something other than white space
NonBlankText = Annotated[
    str,
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
    Field(min_length=1, json_schema_extra={"pattern": _NOT_BLANK_NO_NUL}),
]


def _null_is_absent_in_schema(schema: dict[str, Any]) -> None:
    """Declare ``null`` for each optional property, as :class:`Body` accepts it."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required or any(p.get("type") == "null" for p in prop.get("anyOf", ())):
            continue
        outer = {k: prop.pop(k) for k in ("title", "default", "description") if k in prop}
        schema["properties"][name] = {**outer, "anyOf": [prop, {"type": "null"}]}


class Body(BaseModel):
    """Base of every JSON request body (see the module's rules)."""

    model_config = ConfigDict(
        strict=True, extra="forbid", json_schema_extra=_null_is_absent_in_schema
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = cls.model_fields
            return {k: v for k, v in data.items() if v is not None or k not in fields}
        return data


_DIGITS = re.compile(r"[0-9]+")


def _digits(value: Any) -> Any:
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise PydanticCustomError(
                "digits", "give a whole number written with the digits 0-9 only"
            )
        if len(value) > 30:  # out of any range here; int() of 4300 digits would raise
            raise PydanticCustomError("too_large", "the number is too large")
        return int(value)
    if isinstance(value, list):
        raise PydanticCustomError("repeated", "give this parameter once")
    return value


#: an integer in a query string
QueryInt = Annotated[int, BeforeValidator(_digits)]


class Query(BaseModel):
    """Base of every query-string model: unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore")


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: an integer in a JSON body; ``10.0`` is one (JSON has one kind of number), ``"10"`` is not
Int = Annotated[int, BeforeValidator(_integral)]


class SearchIn(Body):
    query: Annotated[NonBlankText, Field(max_length=2000), AfterValidator(_strip)]
    limit: Int = Field(10, ge=1, le=50)


class HybridSearchIn(SearchIn):
    text_weight: float | None = Field(None, ge=0.0, le=1.0)


class GraphSearchIn(SearchIn):
    pass


class DocumentIn(Body):
    title: Annotated[Text, Field(max_length=500), AfterValidator(_strip)] | None = None
    source: Annotated[NonBlankText, Field(max_length=1000), AfterValidator(_strip)]
    content: NonBlankText
    metadata: dict[str, Any] | None = None


class DocumentListQuery(Query):
    limit: QueryInt = Field(20, ge=1, le=100)
    offset: QueryInt = Field(0, ge=0, le=MAX_OFFSET)
