"""Embeddings over HTTP: Jina's ``/v1/embeddings`` and any OpenAI-compatible ``/embeddings``.

Texts are cut into batches of at most ``EMBEDDING_BATCH_SIZE`` texts and
``max_batch_chars`` characters; batches run concurrently (bounded by the upstream's
limiter), and the vectors come back in input order. Every answer is checked: one
vector per text, each of the configured dimension, every number finite. A batch that
fails raises, and the whole call with it; nothing is ever filled with zeros.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import trio

from agent_trio._errors import AgentTrioError, UpstreamProtocolError
from agent_trio._limiter_stats import LimiterStats
from agent_trio._waits import WaitStats
from agent_trio.upstream._batcher import BatcherStats
from agent_trio.upstream._upstream import Upstream, UpstreamStats

__all__ = [
    "Embedder",
    "EmbedderStats",
    "HttpEmbedder",
    "TextPolicy",
    "batches",
    "parse_embeddings",
]

LongTexts = Literal["truncate", "error"]


@dataclass(frozen=True, slots=True)
class EmbedderStats:
    """An embedder's limiter and counters, and its HTTP upstream's state.

    ``counters`` holds ``texts_embedded`` and ``texts_truncated``, and each provider's
    own (``batches`` over HTTP; ``texts_windowed``, ``inference_seconds`` locally).
    ``upstream`` is ``None`` for a local model, as are the fields only it has
    (``query_batches``, ``max_seq_length``) for the others.
    """

    closed: bool
    limiter: LimiterStats
    counters: Mapping[str, float]
    upstream: UpstreamStats | None = None
    query_batches: BatcherStats | None = None
    max_seq_length: int | None = None
    #: calls of the model, or attempts of the HTTP upstream, begun and not yet over
    attempts_in_flight: int = 0
    #: the waits for the limiter (``limiter``) and, over HTTP, for the rate (``rate``)
    waits: Mapping[str, WaitStats] = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    """What the rest of the service sees of an embedder."""

    provider: str
    model: str
    dimensions: int
    limiter: trio.CapacityLimiter

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for documents, in input order."""
        ...

    async def embed_query(self, text: str) -> list[float]:
        """The vector of a search query."""
        ...

    def reads_whole(self, text: str) -> bool:
        """Whether the model reads all of ``text`` in one pass (no truncation, no windows).

        Cheap and thread-safe: ingestion asks it of every chunk while it chunks, in a
        worker thread, and cuts a chunk again where the answer is no.
        """
        ...

    def statistics(self) -> EmbedderStats:
        """Limiter, breaker and counters; cheap, no I/O."""
        ...


class TextPolicy:
    """How empty and over-long texts are handled, shared by every provider.

    An empty (or blank) text is a caller's mistake: ``ValueError`` naming its index.
    A text longer than ``max_text_chars`` is cut to that length (``long_texts=
    "truncate"``, counted in the statistics) or refused (``"error"``).
    """

    def __init__(self, *, max_text_chars: int, long_texts: LongTexts = "truncate") -> None:
        if max_text_chars < 1:
            raise ValueError("max_text_chars must be >= 1")
        self.max_text_chars = max_text_chars
        self.long_texts = long_texts
        self.truncated = 0

    def apply(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        prepared = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is {type(text).__name__}, not str")
            if not text.strip():
                raise ValueError(f"text {index} is empty; only non-blank texts can be embedded")
            if len(text) > self.max_text_chars:
                if self.long_texts == "error":
                    raise ValueError(
                        f"text {index} has {len(text)} characters, more than the "
                        f"{self.max_text_chars} an embedding request may carry"
                    )
                self.truncated += 1
                text = text[: self.max_text_chars]
            prepared.append(text)
        return prepared


def batches(texts: Sequence[str], *, size: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` slices of at most ``size`` texts and ``max_chars`` characters.

    A single text longer than ``max_chars`` gets a batch of its own.
    """
    start, chars = 0, 0
    for index, text in enumerate(texts):
        count = index - start
        if count and (count >= size or chars + len(text) > max_chars):
            yield start, index
            start, chars = index, 0
        chars += len(text)
    if start < len(texts):
        yield start, len(texts)


class HttpEmbedder:
    """An :class:`Embedder` for the ``jina`` and ``openai`` providers."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        provider: Literal["jina", "openai"],
        model: str,
        dimensions: int,
        batch_size: int,
        max_batch_chars: int = 200_000,
        max_text_chars: int = 24_000,
        long_texts: LongTexts = "truncate",
        send_dimensions: bool | None = None,
        fan_out: int | None = None,
    ) -> None:
        self._upstream = upstream
        self.provider: str = provider
        self.model = model
        self.dimensions = dimensions
        self.limiter = upstream.limiter
        self.batch_size = batch_size
        self.max_batch_chars = max_batch_chars
        self._policy = TextPolicy(max_text_chars=max_text_chars, long_texts=long_texts)
        self._send_dimensions = (
            _model_takes_dimensions(provider, model) if send_dimensions is None else send_dimensions
        )
        self._tasks = provider == "jina" and _jina_takes_task(model)
        # batches one call runs at once: enough to keep every slot busy during back-offs,
        # few enough that other callers' requests interleave with a large ingestion
        self.fan_out = fan_out or 2 * int(upstream.adaptive.max_concurrency)
        self.texts_embedded = 0
        self.batches_sent = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed(self._policy.apply(texts), query=False)

    async def embed_query(self, text: str) -> list[float]:
        (vector,) = await self._embed(self._policy.apply([text]), query=True)
        return vector

    def reads_whole(self, text: str) -> bool:
        # the APIs read thousands of tokens; what we send is cut at max_text_chars
        return len(text) <= self._policy.max_text_chars

    def statistics(self) -> EmbedderStats:
        upstream = self._upstream.statistics()
        counters = {
            "texts_embedded": self.texts_embedded,
            "batches": self.batches_sent,
            "texts_truncated": self._policy.truncated,
        }
        return EmbedderStats(
            upstream.closed,
            upstream.limiter,
            counters,
            upstream,
            attempts_in_flight=upstream.attempts_in_flight,
            waits=upstream.waits,
        )

    @property
    def closed(self) -> bool:
        return self._upstream.closed

    def close(self) -> None:
        self._upstream.close()

    # -- internals -------------------------------------------------------------
    async def _embed(self, texts: list[str], *, query: bool) -> list[list[float]]:
        self._upstream.check_open()
        if not texts:
            return []
        slices = list(batches(texts, size=self.batch_size, max_chars=self.max_batch_chars))
        results: list[list[float] | None] = [None] * len(texts)
        failure: list[AgentTrioError] = []
        todo = iter(slices)

        async def worker(cancel: trio.CancelScope) -> None:
            for start, stop in todo:
                try:
                    vectors = await self._embed_batch(texts[start:stop], query=query)
                except AgentTrioError as exc:
                    failure.append(exc)
                    cancel.cancel()  # the call fails as a whole; stop the other batches
                    return
                results[start:stop] = vectors

        async with trio.open_nursery() as nursery:
            for _ in range(min(self.fan_out, len(slices))):
                nursery.start_soon(worker, nursery.cancel_scope)
        if failure:
            raise failure[0]
        if any(vector is None for vector in results):  # pragma: no cover - a bug, not an answer
            raise AssertionError("a batch finished without its vectors")
        self.texts_embedded += len(texts)
        return [vector for vector in results if vector is not None]

    async def _embed_batch(self, texts: list[str], *, query: bool) -> list[list[float]]:
        payload: dict[str, Any] = {"model": self.model, "input": texts}
        if self.provider == "openai":
            payload["encoding_format"] = "float"
        if self._send_dimensions:
            payload["dimensions"] = self.dimensions
        if self._tasks:
            payload["task"] = "retrieval.query" if query else "retrieval.passage"
        self.batches_sent += 1

        def parse(data: Any) -> list[list[float]]:
            return parse_embeddings(data, count=len(texts), dimensions=self.dimensions)

        return await self._upstream.post_json("embeddings", payload, parse)


def parse_embeddings(data: Any, *, count: int, dimensions: int) -> list[list[float]]:
    """The vectors of an OpenAI-shaped answer, in input order, or UpstreamProtocolError."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise _malformed("no 'data' list in the answer")
    if len(items) != count:
        raise _malformed(f"{len(items)} vectors for {count} texts")
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _malformed(f"item {position} is not an object")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
            raise _malformed(f"item {position} has a missing, repeated or out-of-range index")
        vectors[index] = _vector(item.get("embedding"), index, dimensions)
    return [vector for vector in vectors if vector is not None]


_NUMBER_TYPES = frozenset({float, int})


def _vector(raw: Any, index: int, dimensions: int) -> list[float]:
    if not isinstance(raw, list):
        raise _malformed(f"vector {index} is not a list of numbers (base64 is not asked for)")
    if len(raw) != dimensions:
        raise _malformed(
            f"vector {index} has {len(raw)} dimensions, but EMBEDDING_DIMENSIONS is {dimensions}"
        )
    # builtins over the whole list (a vector is hundreds of numbers; JSON gives
    # float or int, and bool is neither here: type() is exact)
    if not set(map(type, raw)) <= _NUMBER_TYPES:
        raise _malformed(f"vector {index} holds something that is not a number")
    vector = list(map(float, raw))
    if not all(map(math.isfinite, vector)):
        raise _malformed(f"vector {index} holds a value that is not a finite number")
    if not any(vector):
        raise _malformed(f"vector {index} is all zeros")
    return vector


def _malformed(what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"embedding upstream sent a malformed answer: {what}", upstream="embedding"
    )


def _model_takes_dimensions(provider: str, model: str) -> bool:
    """Whether to ask for ``dimensions``: only models known to accept it (Matryoshka)."""
    name = model.rsplit("/", 1)[-1].lower()
    if provider == "openai":
        return name.startswith("text-embedding-3")
    return _jina_takes_task(model)


def _jina_takes_task(model: str) -> bool:
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(("jina-embeddings-v3", "jina-embeddings-v4"))
