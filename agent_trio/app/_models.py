"""Request bodies and query strings of the HTTP API, validated by quart-schema."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "DocumentIn",
    "DocumentListQuery",
    "GraphSearchIn",
    "HybridSearchIn",
    "SearchIn",
]

#: text that must hold something other than white space
Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class SearchIn(_Body):
    query: Query
    limit: int = Field(10, ge=1, le=50)


class HybridSearchIn(SearchIn):
    text_weight: float | None = Field(None, ge=0.0, le=1.0)


class GraphSearchIn(SearchIn):
    pass


class DocumentIn(_Body):
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
    content: Annotated[str, StringConstraints(min_length=1)]
    metadata: dict[str, Any] | None = None


class DocumentListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)
