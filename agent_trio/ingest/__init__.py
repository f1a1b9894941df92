"""Ingestion: reading documents, chunking them, and the pipeline that stores them.

The parts here do no I/O beyond reading files::

    paths = iter_paths(["docs/"])                  # files and folders -> sorted files
    doc = read_document(paths[0])                  # or parse_document(source, text)
    chunks = chunk_text(doc.content, size=1000, overlap=200)

The values read are :mod:`agent_trio.document`'s; entities and facts are found by
an extractor of :mod:`agent_trio.extract`. :class:`Ingestor` puts them together
with an embedder and the knowledge store::

    ingestor = Ingestor(store, embedder, extractor_for(settings, llm),
                        chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    outcome = await ingestor.ingest(doc)                     # one document
    summary = await ingestor.ingest_paths([Path("docs/")])  # files and folders, pipelined

``python -m agent_trio ingest`` is ``agent_trio._ingest_cli``, beside the other commands.

Every failure to read or parse one document is an :class:`~agent_trio.IngestError`
whose message names the document and the reason.
"""

from agent_trio.ingest._chunker import chunk_text, estimate_tokens
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
from agent_trio.ingest._steps import embedding_text

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DocumentOutcome",
    "IngestSummary",
    "Ingestor",
    "LogProgress",
    "NoProgress",
    "Progress",
    "TerminalProgress",
    "chunk_text",
    "embedding_text",
    "estimate_tokens",
    "iter_paths",
    "parse_document",
    "progress_for",
    "read_document",
    "source_for",
]
