"""The tools the model may call, their JSON-schema specs, and running them.

Arguments are validated before a tool runs; a bad argument, an unknown tool or a
tool that fails is an *error result* for the model (``{"error": "..."}``), which
it can read and correct, never a silent empty result. Only an outage — the graph
or the embedding API down, the service closing — ends the chat: those are raised.

:meth:`Toolbox.run_all` runs the calls of one model turn concurrently, each
under its own deadline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import trio
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent_trio._errors import GraphUnavailable, ResourceClosed, UpstreamUnavailable
from agent_trio.agent._events import Source
from agent_trio.graph import ChunkHit, KnowledgeStore
from agent_trio.search import GraphResult, Searcher
from agent_trio.upstream import ToolCall, ToolSpec

__all__ = ["TOOL_SPECS", "ToolOutcome", "Toolbox"]

log = logging.getLogger("agent_trio.agent")

#: an outage: the chat cannot go on, whatever the model would do with an error
FATAL = (GraphUnavailable, UpstreamUnavailable, ResourceClosed)
#: characters of one chunk or document the model gets back
_CONTENT_CHARS = 1500
_DOCUMENT_CHARS = 8000

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
_Date = Annotated[str, StringConstraints(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?")]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Search(_Args):
    query: _Text
    limit: int = Field(5, ge=1, le=20)


class _Hybrid(_Search):
    text_weight: float | None = Field(None, ge=0.0, le=1.0)


class _Graph(_Args):
    query: _Text


class _Document(_Args):
    document_id: _Text


class _Listing(_Args):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)


class _Relationships(_Args):
    entity_name: _Text
    depth: int = Field(1, ge=1, le=3)


class _Timeline(_Args):
    entity_name: _Text
    start_date: _Date | None = None
    end_date: _Date | None = None


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_QUERY = {"type": "string", "description": "what to look for, in natural language"}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 20, "default": 5}
_ENTITY = {"type": "string", "description": "the name of a person, company, product, ..."}
_DATE = {"type": "string", "description": "ISO date, YYYY-MM-DD"}

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "vector_search",
        "Find document passages similar in meaning to the query.",
        _object({"query": _QUERY, "limit": _LIMIT}, ["query"]),
    ),
    ToolSpec(
        "graph_search",
        "Find facts (relationships between entities, with dates) in the knowledge graph.",
        _object({"query": _QUERY}, ["query"]),
    ),
    ToolSpec(
        "hybrid_search",
        "Find document passages by meaning and by exact words together (best default).",
        _object(
            {
                "query": _QUERY,
                "limit": _LIMIT,
                "text_weight": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "weight of exact-word matching against meaning",
                },
            },
            ["query"],
        ),
    ),
    ToolSpec(
        "get_document",
        "Read one whole document by its id (ids come with search results).",
        _object({"document_id": {"type": "string"}}, ["document_id"]),
    ),
    ToolSpec(
        "list_documents",
        "List the documents in the knowledge base, newest first.",
        _object(
            {
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "offset": {"type": "integer", "minimum": 0, "default": 0},
            },
            [],
        ),
    ),
    ToolSpec(
        "get_entity_relationships",
        "The facts that connect an entity to others, up to `depth` steps away.",
        _object(
            {
                "entity_name": _ENTITY,
                "depth": {"type": "integer", "minimum": 1, "maximum": 3, "default": 1},
            },
            ["entity_name"],
        ),
    ),
    ToolSpec(
        "get_entity_timeline",
        "The dated facts about an entity in time order, optionally between two dates.",
        _object({"entity_name": _ENTITY, "start_date": _DATE, "end_date": _DATE}, ["entity_name"]),
    ),
)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool gives back: ``content`` (JSON text for the model) and sources."""

    content: str
    sources: tuple[Source, ...] = ()
    error: str | None = None

    @classmethod
    def of(cls, value: Any, sources: Sequence[Source] = ()) -> ToolOutcome:
        return cls(json.dumps(value, ensure_ascii=False, default=str), tuple(sources))

    @classmethod
    def failed(cls, message: str) -> ToolOutcome:
        return cls(json.dumps({"error": message}, ensure_ascii=False), error=message)


class Toolbox:
    """Runs tool calls against the searcher and the knowledge store."""

    def __init__(self, searcher: Searcher, knowledge: KnowledgeStore, *, deadline: float) -> None:
        self._searcher = searcher
        self._knowledge = knowledge
        self.deadline = deadline
        self._tools: dict[str, tuple[type[_Args], Callable[[Any], Awaitable[ToolOutcome]]]] = {
            "vector_search": (_Search, self._vector),
            "graph_search": (_Graph, self._graph),
            "hybrid_search": (_Hybrid, self._hybrid),
            "get_document": (_Document, self._document),
            "list_documents": (_Listing, self._listing),
            "get_entity_relationships": (_Relationships, self._relationships),
            "get_entity_timeline": (_Timeline, self._timeline),
        }

    async def run_all(self, calls: Sequence[ToolCall]) -> list[ToolOutcome]:
        """Run the calls concurrently, each under :attr:`deadline`; outcomes in call order.

        Raises the first outage (in call order) once every call has finished.
        """
        outcomes: list[ToolOutcome | BaseException] = [ToolOutcome.failed("not run")] * len(calls)

        async def one(index: int, call: ToolCall) -> None:
            outcomes[index] = await self._run_one(call)

        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                nursery.start_soon(one, index, call)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if isinstance(o, ToolOutcome)]

    async def _run_one(self, call: ToolCall) -> ToolOutcome | BaseException:
        with trio.move_on_after(self.deadline):
            try:
                return await self.run(call.name, call.arguments)
            except FATAL as exc:
                return exc
            except Exception as exc:
                log.warning("tool %s failed: %s: %s", call.name, type(exc).__name__, exc)
                return ToolOutcome.failed(f"{call.name} failed: {exc}")
        log.warning("tool %s did not finish within %g s", call.name, self.deadline)
        return ToolOutcome.failed(f"{call.name} did not finish within {self.deadline:g} s")

    async def run(self, name: str, arguments: str) -> ToolOutcome:
        """One call; a bad argument or an unknown tool is an error outcome."""
        entry = self._tools.get(name)
        if entry is None:
            log.warning("the model called an unknown tool %r", name)
            return ToolOutcome.failed(f"there is no tool named {name!r}")
        model, handler = entry
        try:
            raw = json.loads(arguments or "{}")
            args = model.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            log.info("tool %s: bad arguments %r: %s", name, arguments[:200], exc)
            return ToolOutcome.failed(f"bad arguments for {name}: {_first_error(exc)}")
        return await handler(args)

    # -- the tools -------------------------------------------------------------------
    async def _vector(self, args: _Search) -> ToolOutcome:
        return _chunks(await self._searcher.vector(args.query, args.limit))

    async def _hybrid(self, args: _Hybrid) -> ToolOutcome:
        found = await self._searcher.hybrid(args.query, args.limit, text_weight=args.text_weight)
        return _chunks(found)

    async def _graph(self, args: _Graph) -> ToolOutcome:
        return ToolOutcome.of({"facts": [_fact(f) for f in await self._searcher.graph(args.query)]})

    async def _document(self, args: _Document) -> ToolOutcome:
        document = await self._knowledge.get_document(args.document_id)
        if document is None:
            return ToolOutcome.failed(f"no document with id {args.document_id!r}")
        return ToolOutcome.of(
            {
                "id": document.id,
                "title": document.title,
                "source": document.source,
                "content": document.content[:_DOCUMENT_CHARS],
                "truncated": len(document.content) > _DOCUMENT_CHARS,
            }
        )

    async def _listing(self, args: _Listing) -> ToolOutcome:
        rows, total = await self._knowledge.list_documents(args.limit, args.offset)
        documents = [{"id": r.id, "title": r.title, "source": r.source} for r in rows]
        return ToolOutcome.of({"documents": documents, "total": total})

    async def _relationships(self, args: _Relationships) -> ToolOutcome:
        found = await self._searcher.relationships(args.entity_name, args.depth)
        if found is None:
            return ToolOutcome.failed(f"no entity named {args.entity_name!r}")
        return ToolOutcome.of(
            {
                "entity": {"name": found.entity.name, "type": found.entity.type},
                "neighbours": [{"name": e.name, "type": e.type} for e in found.neighbours],
                "facts": [_fact(f) for f in found.facts],
            }
        )

    async def _timeline(self, args: _Timeline) -> ToolOutcome:
        facts = await self._searcher.timeline(args.entity_name)
        start, end = args.start_date, args.end_date
        kept = [
            f
            for f in facts
            if (start is None or (f.valid_at or "") >= start)
            and (end is None or (f.valid_at or "9999")[: len(end)] <= end)
        ]
        return ToolOutcome.of({"entity": args.entity_name, "facts": [_fact(f) for f in kept]})


def _chunks(found: Sequence[ChunkHit]) -> ToolOutcome:
    results = [
        {
            "document_id": c.document_id,
            "document_title": c.document_title,
            "document_source": c.document_source,
            "chunk_id": c.chunk_id,
            "score": round(c.score, 4),
            "content": c.content[:_CONTENT_CHARS],
        }
        for c in found
    ]
    return ToolOutcome.of({"results": results}, [Source.from_chunk(c) for c in found])


def _fact(fact: GraphResult) -> Mapping[str, Any]:
    return {
        "fact": fact.fact,
        "source": fact.source_name,
        "relation": fact.relation,
        "target": fact.target_name,
        "valid_at": fact.valid_at,
        "invalid_at": fact.invalid_at,
        "document_id": fact.document_id,
    }


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors:
            where = ".".join(str(p) for p in errors[0]["loc"])
            return f"{where}: {errors[0]['msg']}" if where else str(errors[0]["msg"])
    return str(exc)
