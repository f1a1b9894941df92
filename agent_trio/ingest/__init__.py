"""Ingestion: reading documents, chunking them, extracting entities and dated facts.

The parts here do no I/O beyond reading files::

    paths = iter_paths(["docs/"])                  # files and folders -> sorted files
    doc = read_document(paths[0])                  # or parse_document(source, text)
    chunks = chunk_text(doc.content, size=1000, overlap=200)
    extraction = await RuleExtractor().extract(doc, chunks)   # or LlmExtractor(complete)

:class:`Ingestor` puts them together with an embedder and the knowledge store::

    ingestor = Ingestor(store, embedder, extractor_for(settings, llm),
                        chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    outcome = await ingestor.ingest(doc)                     # one document
    summary = await ingestor.ingest_paths([Path("docs/")])  # files and folders, pipelined

``python -m agent_trio ingest`` is ``agent_trio._ingest_cli``, beside the other commands.

Every failure to read or parse one document is an :class:`~agent_trio.IngestError`
whose message names the document and the reason.
"""

from agent_trio.ingest._chunker import chunk_text, estimate_tokens
from agent_trio.ingest._extract import Extractor
from agent_trio.ingest._identity import entity_key
from agent_trio.ingest._llm_extract import Complete, LlmExtractor
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
from agent_trio.ingest._outcome import DocumentOutcome, IngestSummary, NoProgress, Progress
from agent_trio.ingest._pipeline import Ingestor
from agent_trio.ingest._progress import LogProgress, TerminalProgress, progress_for
from agent_trio.ingest._reader import (
    SUPPORTED_SUFFIXES,
    iter_paths,
    parse_document,
    read_document,
    source_for,
)
from agent_trio.ingest._rules import RuleExtractor
from agent_trio.ingest._setup import complete_with, extractor_for
from agent_trio.ingest._steps import embedding_text

__all__ = [
    "ENTITY_TYPES",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Complete",
    "DocumentOutcome",
    "Entity",
    "EntityType",
    "Extraction",
    "Extractor",
    "Fact",
    "IngestSummary",
    "Ingestor",
    "LlmExtractor",
    "LogProgress",
    "NoProgress",
    "Progress",
    "RuleExtractor",
    "SourceDocument",
    "TerminalProgress",
    "chunk_text",
    "complete_with",
    "document_id_for",
    "embedding_text",
    "entity_key",
    "estimate_tokens",
    "extractor_for",
    "iter_paths",
    "parse_document",
    "progress_for",
    "read_document",
    "source_for",
]
