"""What ingestion reports: per document, per run, and as it goes.

A run tells its :class:`Progress` about every document twice: once when it takes
the document up (``document_started``), and once when it is done with it, either
``document_finished`` (written or unchanged) or ``document_failed``. Nothing else
about the order is promised: documents overlap in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["DocumentOutcome", "IngestSummary", "NoProgress", "Progress"]


@dataclass(frozen=True)
class DocumentOutcome:
    """One document ingested: ``written`` (a new version stored) or ``unchanged``.

    The counts describe the stored version. For an ``unchanged`` document only
    ``chunk_count`` is known without extracting again (the chunking is part of what
    decides "unchanged"); ``entity_count`` and ``fact_count`` are then 0.
    """

    id: str
    source: str
    status: Literal["written", "unchanged"]
    chunk_count: int
    entity_count: int
    fact_count: int


@dataclass
class IngestSummary:
    """A run's totals: ``documents`` written, with their chunks, entities and facts;
    ``skipped`` unchanged; ``failed`` as ``(source, reason)``, sorted by source."""

    documents: int = 0
    chunks: int = 0
    entities: int = 0
    facts: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, outcome: DocumentOutcome) -> None:
        if outcome.status == "unchanged":
            self.skipped += 1
            return
        self.documents += 1
        self.chunks += outcome.chunk_count
        self.entities += outcome.entity_count
        self.facts += outcome.fact_count

    def lines(self) -> list[str]:
        """The summary as ``name: value`` lines, then one indented line per failure."""
        out = [
            f"documents: {self.documents}",
            f"chunks: {self.chunks}",
            f"entities: {self.entities}",
            f"facts: {self.facts}",
            f"skipped: {self.skipped}",
            f"failed: {len(self.failed)}",
        ]
        out += [f"  {source}: {reason}" for source, reason in self.failed]
        return out


class Progress(Protocol):
    """Told about a run as it goes; called from the run's tasks, must not block."""

    def started(self, total: int) -> None:
        """The run found ``total`` files."""

    def document_started(self, source: str) -> None:
        """The document read from ``source`` is taken up."""

    def document_finished(self, outcome: DocumentOutcome) -> None:
        """The document is stored (or was already)."""

    def document_failed(self, source: str, reason: str) -> None:
        """The document could not be ingested; the others go on."""


class NoProgress:
    """A :class:`Progress` that ignores everything."""

    def started(self, total: int) -> None:
        pass

    def document_started(self, source: str) -> None:
        pass

    def document_finished(self, outcome: DocumentOutcome) -> None:
        pass

    def document_failed(self, source: str, reason: str) -> None:
        pass
