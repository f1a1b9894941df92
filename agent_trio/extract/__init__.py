"""Extraction: the entities a document names and the dated facts that relate them.

An :class:`Extractor` reads a document's chunks and returns an :class:`Extraction`::

    extraction = await RuleExtractor().extract(doc, chunks)   # offline, deterministic
    extraction = await LlmExtractor(complete).extract(doc, chunks)   # asks a model
    extractor = extractor_for(settings, llm)   # the one the settings choose

    async with open_extraction_workers() as workers:   # worker processes for the rules
        extractions = await RuleExtractor(workers).extract_each([(doc, chunks), ...])

Facts refer to entities by :func:`entity_key`, the graph's own key, so extraction
and storage cannot disagree on which entity a name is.
"""

from agent_trio.extract._extract import Extractor
from agent_trio.extract._identity import entity_key
from agent_trio.extract._llm_extract import Complete, LlmExtractor
from agent_trio.extract._model import ENTITY_TYPES, Entity, EntityType, Extraction, Fact
from agent_trio.extract._rules import RuleExtractor
from agent_trio.extract._setup import complete_with, extractor_for
from agent_trio.extract._workers import ExtractionWorkers, open_extraction_workers

__all__ = [
    "ENTITY_TYPES",
    "Complete",
    "Entity",
    "EntityType",
    "Extraction",
    "ExtractionWorkers",
    "Extractor",
    "Fact",
    "LlmExtractor",
    "RuleExtractor",
    "complete_with",
    "entity_key",
    "extractor_for",
    "open_extraction_workers",
]
