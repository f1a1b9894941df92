"""The extractor interface: entities and dated facts from a document's chunks.

Two implementations: :class:`~agent_trio.extract.RuleExtractor` (``._rules``),
deterministic and offline, and :class:`~agent_trio.extract.LlmExtractor`
(``._llm_extract``), which asks a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent_trio.document import Chunk, SourceDocument
from agent_trio.extract._model import Extraction

__all__ = ["Extractor"]


class Extractor(Protocol):
    """Finds entities and dated facts in a document's chunks."""

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction: ...
