"""Fusing the vector and the full-text ranking of one query into one score.

Two methods, both giving scores in ``[0, 1]`` (higher is better) that are
comparable between the results of one query:

* **Reciprocal rank fusion** (the default). A chunk at 1-based rank ``r_i`` in
  list ``i`` scores ``Σ_i 1 / (k + r_i)`` over the lists it appears in, with
  ``k = 60`` (Cormack, Clarke & Büttcher, 2009). The sum is divided by its maximum,
  ``n / (k + 1)`` for ``n`` lists, so a chunk ranked first by both searches scores
  1.0 and one ranked first by only one of two scores 0.5. Only ranks count, so the
  engines' score scales do not matter.
* **Weighted fusion**, when a ``text_weight`` ``w`` in ``[0, 1]`` is given::

      score = (1 - w) · vector_score + w · text_score

  ``vector_score`` is the cosine similarity mapped to ``[0, 1]`` as
  ``(1 + cos) / 2``; ``text_score`` is the full-text score divided by the best
  full-text score of the same query. A chunk missing from a list contributes 0
  for that list. ``w = 0`` ranks by vector alone, ``w = 1`` by text alone.

The searcher breaks ties by vector rank, then by full-text rank, so the order is
deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["RRF_K", "reciprocal_rank_fusion", "weighted_fusion"]

#: the rank constant of reciprocal rank fusion
RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = RRF_K
) -> dict[str, float]:
    """Fused, normalised scores of the ids in ``rankings`` (each best first)."""
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    if not rankings:
        return {}
    total: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(dict.fromkeys(ranking), start=1):
            total[key] = total.get(key, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    return {key: min(1.0, score / best) for key, score in total.items()}


def weighted_fusion(
    vector: Mapping[str, float], text: Mapping[str, float], text_weight: float
) -> dict[str, float]:
    """``(1 - w) · vector + w · text`` per id; both inputs already in ``[0, 1]``."""
    if not 0.0 <= text_weight <= 1.0:
        raise ValueError(f"text_weight must be between 0 and 1, got {text_weight}")
    keys = dict.fromkeys([*vector, *text])
    return {
        key: (1.0 - text_weight) * vector.get(key, 0.0) + text_weight * text.get(key, 0.0)
        for key in keys
    }
