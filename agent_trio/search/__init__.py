"""Searching the knowledge base: vector, full-text, hybrid, graph facts, entities."""

from agent_trio.search._fusion import RRF_K, reciprocal_rank_fusion, weighted_fusion
from agent_trio.search._results import GraphResult, Relationships
from agent_trio.search._searcher import QueryEmbedder, Searcher

__all__ = [
    "RRF_K",
    "GraphResult",
    "QueryEmbedder",
    "Relationships",
    "Searcher",
    "reciprocal_rank_fusion",
    "weighted_fusion",
]
