"""Search and document routes: ``/search/*`` and ``/documents``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import trio
from quart import Blueprint, Response, jsonify
from quart_schema import validate_querystring, validate_request

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
from agent_trio.ingest import parse_document
from agent_trio.search import ChunkResult, GraphResult

__all__ = ["blueprint"]

blueprint = Blueprint("knowledge", __name__)

#: a search that takes longer than this answers 504
SEARCH_DEADLINE = 30.0
#: ingesting one posted document (embedding included) may take this long
INGEST_DEADLINE = 300.0


async def _search(
    kind: str, key: str, run: Callable[[], Awaitable[Sequence[ChunkResult | GraphResult]]]
) -> Response:
    """Run one search under its deadline; answer with the results and the time taken."""
    started = time.perf_counter()
    with trio.fail_after(SEARCH_DEADLINE):
        results = await run()
    return jsonify(
        {
            key: [r.to_api() for r in results],
            "total_results": len(results),
            "search_type": kind,
            "query_time_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    )


@blueprint.post("/search/vector")
@validate_request(SearchIn)
async def search_vector(data: SearchIn) -> Response:
    searcher = current_service().searcher
    return await _search("vector", "results", lambda: searcher.vector(data.query, data.limit))


@blueprint.post("/search/hybrid")
@validate_request(HybridSearchIn)
async def search_hybrid(data: HybridSearchIn) -> Response:
    searcher = current_service().searcher
    return await _search(
        "hybrid",
        "results",
        lambda: searcher.hybrid(data.query, data.limit, text_weight=data.text_weight),
    )


@blueprint.post("/search/graph")
@validate_request(GraphSearchIn)
async def search_graph(data: GraphSearchIn) -> Response:
    searcher = current_service().searcher
    return await _search("graph", "graph_results", lambda: searcher.graph(data.query, data.limit))


@blueprint.get("/documents")
@validate_querystring(DocumentListQuery)
async def list_documents(query_args: DocumentListQuery) -> Response:
    rows, total = await current_service().knowledge.list_documents(
        query_args.limit, query_args.offset
    )
    return jsonify(
        {
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
    )


@blueprint.get("/documents/<string:document_id>")
async def get_document(document_id: str) -> Response:
    document = await current_service().knowledge.get_document(document_id)
    if document is None:
        raise ApiError(404, "not_found", f"no document with id {document_id!r}")
    return jsonify(
        {
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
    )


@blueprint.post("/documents")
@validate_request(DocumentIn)
async def post_document(data: DocumentIn) -> tuple[Response, int]:
    service = current_service()
    try:
        document = parse_document(
            data.source, data.content, title=data.title or None, metadata=data.metadata
        )
        with trio.fail_after(INGEST_DEADLINE):
            outcome = await service.ingestor.ingest(document)
    except IngestError as exc:  # no text to ingest, or a text the embedder refuses
        raise ApiError(422, "invalid_document", str(exc), field="content") from exc
    body = {
        "id": outcome.id,
        "chunk_count": outcome.chunk_count,
        "entity_count": outcome.entity_count,
        "status": outcome.status,
    }
    return jsonify(body), 201
