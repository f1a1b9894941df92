"""A document as read and the chunks its content is cut into.

Both are frozen: a stage returns new values and never edits what it was given.
A document's id is derived from its source alone, so reading the same source
twice addresses the same node.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Chunk", "SourceDocument", "document_id_for"]

# Fixed namespace: changing it would give every stored document a new id.
_DOCUMENT_NAMESPACE = uuid.UUID("6f1c2a4e-0d1b-5c7e-9a43-2f8e1b7d5c90")


def document_id_for(source: str) -> str:
    """The stable id of the document read from ``source`` (a UUID5 string)."""
    return str(uuid.uuid5(_DOCUMENT_NAMESPACE, source))


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One document as read: normalised ``content`` (the body, without front matter).

    ``metadata`` holds only JSON-safe values. ``content_hash`` covers content, title
    and metadata, so a changed title or tag is a change too.
    """

    source: str
    title: str
    content: str
    metadata: dict[str, Any] = field(hash=False)
    content_hash: str
    #: derived from ``source`` alone: stable across runs and content changes
    document_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once: every stage asks for it, and a UUID5 is a SHA-1
        object.__setattr__(self, "document_id", document_id_for(self.source))


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document's content as the chunker cut it: ``text == content[start:end]``.

    ``heading_path`` is the chain of Markdown headings the chunk sits under,
    outermost first; it is context for display and embedding, not part of ``text``.
    """

    index: int
    text: str
    token_estimate: int
    heading_path: tuple[str, ...]
    start: int
    end: int

    @property
    def context_text(self) -> str:
        """``text`` preceded by its heading path, for embedding with context."""
        if not self.heading_path:
            return self.text
        return " > ".join(self.heading_path) + "\n\n" + self.text
