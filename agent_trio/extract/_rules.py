"""Extraction by rules: deterministic, offline, from the text alone.

The rules, in short: an entity is a run of capitalised words (name particles and
``&`` may join them; a lone word at the start of a sentence counts only when the
document also uses it elsewhere). Its type is voted by cues: company suffixes,
event words, product codes and launch verbs, titles and roles, ``in <Place>``.
A lone word that is the first word of exactly one longer name (``Kestrel`` for
``Kestrel Labs``), or the last word of one person's name, is that entity. Each
sentence with two or more entities gives a fact per pair of neighbouring entities;
its relation comes from the verb between them (passive ``… by`` reverses it), its
dates from the sentence: a date after ``until``, ``left``, ``ended`` … closes the
fact (``invalid_at``), any other date opens it (``valid_at``).

The parts: :mod:`._names` finds the names, :mod:`._kinds` types them,
:mod:`._relations` and :mod:`._dates` read what a sentence says of them and when,
and :mod:`._facts` makes the facts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import trio

from agent_trio.document import Chunk, SourceDocument, text_sentences
from agent_trio.extract._facts import sentence_facts
from agent_trio.extract._kinds import personal, unmarked_type, winner
from agent_trio.extract._model import Entity, EntityType, Extraction
from agent_trio.extract._names import Mention, Sentence, sentence_mentions
from agent_trio.extract._workers import ExtractionWorkers

__all__ = ["RuleExtractor"]

_LIST_MARKER = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)])\s+")


class RuleExtractor:
    """Deterministic extraction from the text alone (see the module doc for the rules).

    With ``workers``, :meth:`extract_each` hands its documents to a worker process
    once the workers are up (see :mod:`._workers`); the extractions are the same.
    """

    def __init__(self, workers: ExtractionWorkers | None = None) -> None:
        self.workers = workers

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction:
        seen: set[str] = set()
        sentences: list[Sentence] = []
        for chunk in chunks:
            await trio.lowlevel.checkpoint()
            _add_sentences(sentences, seen, chunk.index, chunk.text)
        return _resolve(sentences)

    async def extract_each(
        self, docs: Sequence[tuple[SourceDocument, Sequence[Chunk]]]
    ) -> list[Extraction]:
        """The extraction of each of ``docs``, in order: in one call to a worker
        process when one is up, else here, one document after another."""
        workers = self.workers
        if workers is not None and workers.up(len(docs)):
            texts = [[(chunk.index, chunk.text) for chunk in chunks] for _, chunks in docs]
            found = await workers.run_sync(extract_texts, texts, documents=len(docs))
            if found is not None:
                return found
        return [await self.extract(doc, chunks) for doc, chunks in docs]


def extract_texts(docs: list[list[tuple[int, str]]]) -> list[Extraction]:
    """:meth:`RuleExtractor.extract` of each document given as its chunks' indexes and
    texts, at once (what a worker process runs)."""
    out: list[Extraction] = []
    for chunks in docs:
        seen: set[str] = set()
        sentences: list[Sentence] = []
        for index, text in chunks:
            _add_sentences(sentences, seen, index, text)
        out.append(_resolve(sentences))
    return out


def _add_sentences(sentences: list[Sentence], seen: set[str], index: int, chunk: str) -> None:
    """Append the sentences of chunk ``index`` not seen in an earlier chunk."""
    for text in _chunk_sentences(chunk):
        if text not in seen:
            seen.add(text)
            sentences.append(Sentence(index, text, tuple(sentence_mentions(text))))


def _chunk_sentences(text: str) -> Iterable[str]:
    for start, end in text_sentences(text):
        sentence = " ".join(text[start:end].split())
        marker = _LIST_MARKER.match(sentence)
        yield sentence[marker.end() :] if marker else sentence


def _resolve(sentences: list[Sentence]) -> Extraction:
    mentions = [m for s in sentences for m in s.mentions]
    aliases = _aliases(mentions)
    confirmed = {aliases.get(m.key, m.key) for m in mentions if not m.initial}
    kept = {
        id(m)
        for m in mentions
        if not m.initial or aliases.get(m.key, m.key) in confirmed or m.votes["organization"] >= 4
    }
    votes: dict[str, Counter[EntityType]] = defaultdict(Counter)
    names: dict[str, str] = {}
    for mention in mentions:
        if id(mention) in kept:
            key = aliases.get(mention.key, mention.key)
            votes[key].update(mention.votes)
            if key == mention.key:  # the name as written in full, not an alias
                names.setdefault(key, mention.name)
    for mention in mentions:
        names.setdefault(aliases.get(mention.key, mention.key), mention.name)
    org_heads = {k.split()[0] for k, c in votes.items() if winner(c) == "organization"}
    types = {
        key: winner(counter) if counter.total() else unmarked_type(names[key], org_heads)
        for key, counter in votes.items()
    }
    entities = tuple(Entity(names[key], key, types[key]) for key in sorted(votes))
    facts = sentence_facts(sentences, kept, aliases, types)
    return Extraction(entities=entities, facts=facts)


def _aliases(mentions: list[Mention]) -> dict[str, str]:
    """Single-word keys that name exactly one longer entity of the document."""
    votes: dict[str, Counter[EntityType]] = defaultdict(Counter)
    for mention in mentions:
        votes[mention.key].update(mention.votes)
    counts = Counter(mention.key for mention in mentions)
    by_first: dict[str, list[str]] = defaultdict(list)
    by_last: dict[str, list[str]] = defaultdict(list)
    for key in votes:
        if " " in key:
            words = key.split()
            by_first[words[0]].append(key)
            by_last[words[-1]].append(key)
    aliases: dict[str, str] = {}
    for key in votes:
        if " " in key:
            continue
        candidates = set(by_first.get(key, ()))
        candidates.update(long for long in by_last.get(key, ()) if personal(long, votes[long]))
        targets = sorted(candidates, key=lambda long: (-counts[long], long))
        # the only candidate, or the one the document names clearly most often
        if len(targets) == 1 or (len(targets) > 1 and counts[targets[0]] > counts[targets[1]]):
            aliases[key] = targets[0]
    return aliases
