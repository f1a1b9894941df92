"""Search and document routes: ``/search/*`` and ``/documents``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from agent_trio._errors import IngestError
from agent_trio.app._context import current_service
from agent_trio.app._errors import ApiError
from agent_trio.app._models import (
    DocumentIn,
    DocumentListQuery,
    GraphSearchIn,
    HybridSearchIn,
    SearchIn,
)
from agent_trio.app._openapi import document_errors
from agent_trio.app._responses import (
    DocumentCreatedOut,
    DocumentListOut,
    DocumentOut,
    GraphSearchOut,
    SearchOut,
)
from agent_trio.graph import ChunkHit
from agent_trio.ingest import parse_document
from agent_trio.search import GraphResult

__all__ = ["blueprint"]

blueprint = Blueprint("knowledge", __name__)

#: a search that takes longer than this answers 504
SEARCH_DEADLINE = 30.0
#: ingesting one posted document (embedding included) may take this long
INGEST_DEADLINE = 300.0


async def _search(
    kind: str, key: str, run: Callable[[], Awaitable[Sequence[ChunkHit | GraphResult]]]
) -> dict[str, Any]:
    """Run one search under its deadline; answer with the results and the time taken."""
    started = time.perf_counter()
    with trio.fail_after(SEARCH_DEADLINE):
        results = await run()
    return {
        key: [r.to_api() for r in results],
        "total_results": len(results),
        "search_type": kind,
        "query_time_ms": round((time.perf_counter() - started) * 1000, 2),
    }


@blueprint.post("/search/vector")
@validate_request(SearchIn)
@validate_response(SearchOut)
@document_errors(504)
async def search_vector(data: SearchIn) -> dict[str, Any]:
    """Search chunks by meaning."""
    searcher = current_service().searcher
    return await _search("vector", "results", lambda: searcher.vector(data.query, data.limit))


@blueprint.post("/search/hybrid")
@validate_request(HybridSearchIn)
@validate_response(SearchOut)
@document_errors(504)
async def search_hybrid(data: HybridSearchIn) -> dict[str, Any]:
    """Search chunks by meaning and by words; ``text_weight`` is the words' share."""
    searcher = current_service().searcher
    return await _search(
        "hybrid",
        "results",
        lambda: searcher.hybrid(data.query, data.limit, text_weight=data.text_weight),
    )


@blueprint.post("/search/graph")
@validate_request(GraphSearchIn)
@validate_response(GraphSearchOut)
@document_errors(504)
async def search_graph(data: GraphSearchIn) -> dict[str, Any]:
    """Search the facts of the knowledge graph."""
    searcher = current_service().searcher
    return await _search("graph", "graph_results", lambda: searcher.graph(data.query, data.limit))


@blueprint.get("/documents")
@validate_querystring(DocumentListQuery)
@validate_response(DocumentListOut)
async def list_documents(query_args: DocumentListQuery) -> dict[str, Any]:
    """List documents, newest first."""
    rows, total = await current_service().knowledge.list_documents(
        query_args.limit, query_args.offset
    )
    return {
        "documents": [
            {
                "id": row.id,
                "title": row.title,
                "source": row.source,
                "chunk_count": row.chunk_count,
                "created_at": row.created_at,
                "metadata": dict(row.metadata),
            }
            for row in rows
        ],
        "total": total,
        "limit": query_args.limit,
        "offset": query_args.offset,
    }


@blueprint.get("/documents/<string:document_id>")
@validate_response(DocumentOut)
@document_errors(404)
async def get_document(document_id: str) -> dict[str, Any]:
    """One document with its content and chunks."""
    document = await current_service().knowledge.get_document(document_id)
    if document is None:
        raise ApiError(404, "not_found", f"no document with id {document_id!r}")
    return {
        "id": document.id,
        "title": document.title,
        "source": document.source,
        "content": document.content,
        "content_hash": document.content_hash,
        "metadata": dict(document.metadata),
        "created_at": document.created_at,
        "updated_at": document.updated_at,
        "chunk_count": len(document.chunks),
        "chunks": [
            {
                "id": chunk.id,
                "index": chunk.index,
                "content": chunk.text,
                "token_estimate": chunk.token_estimate,
            }
            for chunk in document.chunks
        ],
    }


@blueprint.post("/documents")
@validate_request(DocumentIn)
@validate_response(DocumentCreatedOut, 201)
@document_errors(504)
async def post_document(data: DocumentIn) -> tuple[DocumentCreatedOut, int]:
    """Ingest one document (the same pipeline as the ingest command).

    Posting it again unchanged answers ``status: unchanged`` and writes nothing.
    """
    service = current_service()
    try:
        document = parse_document(
            data.source, data.content, title=data.title or None, metadata=data.metadata
        )
        with service.in_flight.track("ingestion"), trio.fail_after(INGEST_DEADLINE):
            outcome = await service.ingestor.ingest(document)
    except IngestError as exc:  # no text to ingest, or a text the embedder refuses
        raise ApiError(422, "invalid_document", str(exc), field="content") from exc
    body = DocumentCreatedOut(
        id=outcome.id,
        chunk_count=outcome.chunk_count,
        entity_count=outcome.entity_count,
        status=outcome.status,
    )
    return body, 201
