"""Searching the knowledge base: chunks by meaning, by words, both; facts; entities.

:class:`Searcher` embeds the query (``embed_query``), asks the
:class:`~agent_trio.graph.KnowledgeStore`, and ranks. Every score it returns is
in ``[0, 1]``, higher is better:

* ``vector``: the cosine similarity as ``(1 + cos) / 2``.
* ``fulltext``: the Lucene score divided by the best of the same query.
* ``hybrid``: both searches fetch ``max(3 · limit, 20)`` candidates (at most 150),
  fused as described in ``_fusion.py`` (reciprocal rank fusion, or the weighted
  sum when ``text_weight`` is given). The two run at the same time (the full-text
  side needs no embedding), and a query of nothing but common words ("what is
  it") has no full-text side: in a large corpus it would match nearly every chunk,
  cost the better part of a second, and rank nothing.
* ``graph``: facts found two ways, each fact keeping its best score —

  1. facts of the entities whose names match the query (full text on entity
     names): the name match score, relative to the best match (top = 1.0);
  2. facts of the entities mentioned in the best ``hybrid`` chunks (top 5): the
     hybrid score of the best such chunk, times 0.8 when the fact was stated
     elsewhere than in one of those chunks.

  Ties go to the more recent ``valid_at``. A statement (the same sentence with
  the same dates) appears once, as its best-ranked fact, even when it relates
  several pairs of entities.

Apart from the two sides of ``hybrid``, the calls run one after another; a failure
arrives as the one error it is (no exception group to unpick), in ``hybrid`` the
vector side's first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Iterable
from typing import Protocol

import trio

from agent_trio._errors import ConfigError
from agent_trio.graph import ChunkHit, FactHit, KnowledgeStore
from agent_trio.search._fusion import reciprocal_rank_fusion, weighted_fusion
from agent_trio.search._results import GraphResult, Relationships

__all__ = ["QueryEmbedder", "Searcher"]

#: hybrid candidates per search: max(FACTOR · limit, MIN), at most MAX
_CANDIDATE_FACTOR, _CANDIDATE_MIN, _CANDIDATE_MAX = 3, 20, 150
#: how many hybrid chunks lead to facts in ``graph``
_GRAPH_CHUNKS = 5
#: weight of a fact found through a chunk that does not state it
_INDIRECT = 0.8


class QueryEmbedder(Protocol):
    """What the searcher needs of an embedder."""

    @property
    def dimensions(self) -> int: ...

    async def embed_query(self, text: str) -> list[float]: ...


class Searcher:
    """Searches ``store`` with query vectors from ``embedder``."""

    def __init__(self, store: KnowledgeStore, embedder: QueryEmbedder) -> None:
        if embedder.dimensions != store.dimensions:
            raise ConfigError(
                f"EMBEDDING_DIMENSIONS: the embedder gives {embedder.dimensions}-dimensional "
                f"vectors but the knowledge store holds {store.dimensions}"
            )
        self._store = store
        self._embedder = embedder

    async def vector(self, query: str, limit: int = 10) -> list[ChunkHit]:
        """Chunks nearest in meaning, best first."""
        return await self._vector_hits(query, limit)

    async def fulltext(self, query: str, limit: int = 10) -> list[ChunkHit]:
        """Chunks sharing the most (and rarest) words with the query, best first."""
        _check_limit(limit)
        return await self._store.fulltext_search(query, limit)

    async def hybrid(
        self, query: str, limit: int = 10, text_weight: float | None = None
    ) -> list[ChunkHit]:
        """Vector and full-text results fused (see ``_fusion.py``), best first."""
        _check_limit(limit)
        if text_weight is not None and not 0.0 <= text_weight <= 1.0:
            raise ValueError(f"text_weight must be between 0 and 1, got {text_weight}")
        by_vector, by_text = await self._both_sides(query, _candidates(limit))
        if text_weight is None:
            ranks = [[h.chunk_id for h in by_vector], [h.chunk_id for h in by_text]]
            fused = reciprocal_rank_fusion(ranks)
        else:
            fused = weighted_fusion(_scores(by_vector), _scores(by_text), text_weight)
        # vector order, then the chunks only the full-text search found, in its order
        hits = {h.chunk_id: h for h in [*by_vector, *by_text]}
        position = {cid: i for i, cid in enumerate(hits)}
        best = sorted(fused, key=lambda cid: (-fused[cid], position[cid]))[:limit]
        return [dataclasses.replace(hits[cid], score=fused[cid]) for cid in best]

    async def graph(self, query: str, limit: int = 10) -> list[GraphResult]:
        """Facts about what the query names or what the best chunks mention."""
        _check_limit(limit)
        k = _candidates(limit)  # more than ``limit``: repeated sentences are dropped
        scored: dict[str, tuple[float, FactHit]] = {}
        _keep_best(scored, ((f.score, f) for f in await self._store.facts_for_query(query, k)))
        chunks = await self.hybrid(query, _GRAPH_CHUNKS)
        chunk_scores = {c.chunk_id: c.score for c in chunks}
        via = await self._store.facts_for_chunks(list(chunk_scores), k)
        _keep_best(scored, ((_via_score(f, chunk_scores), f) for f in via))
        ranked = _once_per_statement(_rank_facts(scored.values()))
        return [GraphResult.from_hit(f, s) for s, f in ranked[:limit]]

    async def relationships(self, entity: str, depth: int = 1) -> Relationships | None:
        """The entity named ``entity`` and the facts within ``depth`` (1-3) of it."""
        found = await self._store.entity_neighbourhood(entity, depth)
        if found is None:
            return None
        facts = tuple(GraphResult.from_hit(f) for f in found.facts)
        return Relationships(found.entity, found.depth, found.entities, facts)

    async def timeline(self, entity: str, limit: int = 100) -> list[GraphResult]:
        """The entity's facts in ``valid_at`` order, undated ones last."""
        _check_limit(limit)
        return [
            GraphResult.from_hit(f) for f in await self._store.entity_timeline(entity, limit=limit)
        ]

    async def _both_sides(self, query: str, k: int) -> tuple[list[ChunkHit], list[ChunkHit]]:
        """The vector and the full-text candidates of ``hybrid``, searched concurrently."""
        found: dict[str, list[ChunkHit]] = {}
        failed: dict[str, Exception] = {}

        async def side(name: str, search: Awaitable[list[ChunkHit]]) -> None:
            try:
                found[name] = await search
            except Exception as exc:  # raised below, alone, as the caller expects
                failed[name] = exc
                nursery.cancel_scope.cancel()  # the other side's answer is not wanted

        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "vector", self._vector_hits(query, k))
            text = self._store.fulltext_search(query, k, common_alone=False)
            nursery.start_soon(side, "text", text)
        for name in ("vector", "text"):
            if name in failed:
                raise failed[name]
        return found["vector"], found["text"]

    async def _vector_hits(self, query: str, limit: int) -> list[ChunkHit]:
        _check_limit(limit)
        embedding = await self._embedder.embed_query(query)
        return await self._store.vector_search(embedding, limit)


def _candidates(limit: int) -> int:
    return min(_CANDIDATE_MAX, max(_CANDIDATE_FACTOR * limit, _CANDIDATE_MIN))


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def _scores(hits: Iterable[ChunkHit]) -> dict[str, float]:
    return {h.chunk_id: h.score for h in hits}


def _via_score(fact: FactHit, chunk_scores: dict[str, float]) -> float:
    base = chunk_scores.get(fact.via_chunk_id or "", 0.0)
    return base if fact.chunk_id in chunk_scores else base * _INDIRECT


def _keep_best(
    scored: dict[str, tuple[float, FactHit]], found: Iterable[tuple[float, FactHit]]
) -> None:
    for score, fact in found:
        if fact.uuid not in scored or score > scored[fact.uuid][0]:
            scored[fact.uuid] = (score, fact)


def _once_per_statement(
    ranked: Iterable[tuple[float, FactHit]],
) -> list[tuple[float, FactHit]]:
    """The best-ranked fact of each statement (sentence and dates).

    A sentence that names three entities relates them in up to three facts with
    the same words; a reader of the results wants the statement once.
    """
    seen: set[tuple[str, str | None, str | None]] = set()
    kept = []
    for score, fact in ranked:
        statement = (" ".join(fact.fact.split()).casefold(), fact.valid_at, fact.invalid_at)
        if statement not in seen:
            seen.add(statement)
            kept.append((score, fact))
    return kept


def _rank_facts(scored: Iterable[tuple[float, FactHit]]) -> list[tuple[float, FactHit]]:
    """Best score first; ties: latest ``valid_at`` first, undated last, then by uuid."""
    ranked = sorted(scored, key=lambda sf: sf[1].uuid)
    ranked.sort(key=lambda sf: sf[1].valid_at or "", reverse=True)  # stable
    ranked.sort(key=lambda sf: -sf[0])
    return ranked
