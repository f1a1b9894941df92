"""User text to a Lucene query that cannot be a syntax error, and score normalisation.

Both engines hand the full-text query string to Lucene's query parser, where
``O'Brien AND (``, an unbalanced quote, a lone ``*`` or ``~`` are syntax errors.
:func:`lucene_query` splits the text at whitespace and quotes every token as a
phrase, escaping only ``\\`` and ``"`` (the two characters that mean something
inside a phrase). Operators become plain words (``"AND"``), wildcards and fuzzy
marks are dropped by the analyser, and the phrases are OR-ed (the parser's
default), so a chunk matching more of the words scores higher.

Lucene scores are unbounded and only comparable within one query, so
:func:`relative_scores` maps them to ``[0, 1]`` by dividing by the best score of
the same query: the top hit scores 1.0, the others keep their proportions.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_TERMS", "lucene_query", "relative_scores"]

#: far below Lucene's clause limit (1024); a longer query adds little but cost
MAX_TERMS = 64


def lucene_query(text: str) -> str | None:
    """A safe Lucene query for ``text``, or ``None`` when it has no word to search for."""
    phrases: list[str] = []
    seen: set[str] = set()
    for token in text.split():
        folded = token.casefold()
        if folded in seen or not any(ch.isalnum() for ch in token):
            continue
        seen.add(folded)
        phrases.append('"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"')
        if len(phrases) == MAX_TERMS:
            break
    return " ".join(phrases) or None


def relative_scores(raw: Sequence[float]) -> list[float]:
    """Each score divided by the largest; all zeros when there is no positive score."""
    top = max(raw, default=0.0)
    if top <= 0.0:
        return [0.0 for _ in raw]
    return [min(1.0, max(0.0, s / top)) for s in raw]
