"""Ingestion: reading documents, chunking them, extracting entities and dated facts.

The parts here do no I/O beyond reading files::

    paths = iter_paths(["docs/"])                  # files and folders -> sorted files
    doc = read_document(paths[0])                  # or parse_document(source, text)
    chunks = chunk_text(doc.content, size=1000, overlap=200)
    extraction = await RuleExtractor().extract(doc, chunks)   # or LlmExtractor(complete)

Every failure to read or parse one document is an :class:`~agent_trio.IngestError`
whose message names the document and the reason.
"""

from agent_trio.ingest._chunker import chunk_text, estimate_tokens
from agent_trio.ingest._extract import (
    Complete,
    Extractor,
    LlmExtractor,
    RuleExtractor,
    entity_key,
)
from agent_trio.ingest._model import (
    ENTITY_TYPES,
    Chunk,
    Entity,
    EntityType,
    Extraction,
    Fact,
    SourceDocument,
    document_id_for,
)
from agent_trio.ingest._reader import (
    SUPPORTED_SUFFIXES,
    iter_paths,
    parse_document,
    read_document,
)

__all__ = [
    "ENTITY_TYPES",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Complete",
    "Entity",
    "EntityType",
    "Extraction",
    "Extractor",
    "Fact",
    "LlmExtractor",
    "RuleExtractor",
    "SourceDocument",
    "chunk_text",
    "document_id_for",
    "entity_key",
    "estimate_tokens",
    "iter_paths",
    "parse_document",
    "read_document",
]
