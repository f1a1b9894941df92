"""Response bodies of the HTTP API.

Routes return these (or dicts of their shape) under quart-schema's
``validate_response``, so ``/openapi.json`` documents exactly what is sent; every
error body is an :class:`ErrorOut`, made by ``_errors.error_response``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ChatMetadataOut",
    "ChatOut",
    "ChunkOut",
    "DocumentChunkOut",
    "DocumentCreatedOut",
    "DocumentListOut",
    "DocumentOut",
    "DocumentSummaryOut",
    "ErrorDetail",
    "ErrorOut",
    "FactOut",
    "GraphSearchOut",
    "HealthCheckOut",
    "HealthOut",
    "LimiterOut",
    "MessageOut",
    "ModelsOut",
    "SearchOut",
    "SessionOut",
    "SourceOut",
    "ToolUseOut",
]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """An error: ``code`` is snake_case, ``field`` names the input at fault, if one."""

    error: ErrorDetail


class ChunkOut(BaseModel):
    chunk_id: str
    document_id: str
    content: str
    score: float
    metadata: dict[str, Any]
    document_title: str
    document_source: str


class SearchOut(BaseModel):
    """The chunks found, best first."""

    results: list[ChunkOut]
    total_results: int
    search_type: Literal["vector", "hybrid"]
    query_time_ms: float


class FactOut(BaseModel):
    fact: str
    uuid: str
    valid_at: str | None
    invalid_at: str | None
    source_node_uuid: str
    target_node_uuid: str


class GraphSearchOut(BaseModel):
    """The facts found, best first."""

    graph_results: list[FactOut]
    total_results: int
    search_type: Literal["graph"]
    query_time_ms: float


class DocumentSummaryOut(BaseModel):
    id: str
    title: str
    source: str
    chunk_count: int
    created_at: str
    metadata: dict[str, Any]


class DocumentListOut(BaseModel):
    """One page of documents, newest first; ``total`` counts them all."""

    documents: list[DocumentSummaryOut]
    total: int
    limit: int
    offset: int


class DocumentChunkOut(BaseModel):
    id: str
    index: int
    content: str
    token_estimate: int


class DocumentOut(BaseModel):
    """A document with its content and its chunks in order."""

    id: str
    title: str
    source: str
    content: str
    content_hash: str
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    chunk_count: int
    chunks: list[DocumentChunkOut]


class DocumentCreatedOut(BaseModel):
    """The document is stored (``written``), or was already, unchanged."""

    id: str
    chunk_count: int
    entity_count: int
    status: Literal["written", "unchanged"]


class HealthCheckOut(BaseModel):
    """One dependency's check; providers add fields of their own."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "error"]
    detail: str
    latency_ms: float | None = None


class LimiterOut(BaseModel):
    borrowed: int
    total: float
    waiting: int


class HealthOut(BaseModel):
    """The service's health: 200 when healthy or degraded, 503 when unhealthy."""

    status: Literal["healthy", "degraded", "unhealthy"]
    version: str
    uptime_seconds: float
    checks: dict[str, HealthCheckOut]
    limiters: dict[str, LimiterOut]


class SourceOut(BaseModel):
    """A chunk the answer quotes."""

    document_id: str
    document_title: str
    document_source: str
    chunk_id: str
    score: float


class ToolUseOut(BaseModel):
    tool_name: str
    args: dict[str, Any]
    tool_call_id: str


class ChatMetadataOut(BaseModel):
    """How the answer was made; more fields may come."""

    model_config = ConfigDict(extra="allow")

    search_type: Literal["vector", "graph", "hybrid"]
    model: str
    steps: int


class ChatOut(BaseModel):
    """The assistant's answer, stored as ``message_id`` in the session."""

    message: str
    session_id: str
    message_id: str
    sources: list[SourceOut]
    tools_used: list[ToolUseOut]
    metadata: ChatMetadataOut


class MessageOut(BaseModel):
    id: str
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "interrupted", "failed"]
    created_at: str
    tool_calls: list[dict[str, Any]]


class ModelsOut(BaseModel):
    """The models a chat may pick (LLM_MODELS, the first by default); without an LLM,
    ``extractive``."""

    models: list[str]
    default: str | None


class SessionOut(BaseModel):
    """A session with its messages, oldest first."""

    id: str
    user_id: str | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    messages: list[MessageOut]
