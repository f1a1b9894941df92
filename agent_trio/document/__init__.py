"""Documents: a document as read, the chunks of its content, and the structure of its text.

Ingestion makes these values (:mod:`agent_trio.ingest` reads and chunks) and
extraction reads them (:mod:`agent_trio.extract`); neither owns them::

    doc = SourceDocument(source, title, content, metadata, content_hash)
    doc.document_id == document_id_for(doc.source)       # stable across runs
    [text[s:e] for s, e in text_sentences(text)]          # sentences, headings left out
"""

from agent_trio.document._model import Chunk, SourceDocument, document_id_for
from agent_trio.document._text import (
    Heading,
    Section,
    Span,
    markdown_headings,
    paragraphs,
    sections,
    sentence_spans,
    text_sentences,
)

__all__ = [
    "Chunk",
    "Heading",
    "Section",
    "SourceDocument",
    "Span",
    "document_id_for",
    "markdown_headings",
    "paragraphs",
    "sections",
    "sentence_spans",
    "text_sentences",
]
