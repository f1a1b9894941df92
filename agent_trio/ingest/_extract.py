"""Entity and fact extraction, by rules (offline) or by an LLM.

Both extractors implement :class:`Extractor`. :class:`RuleExtractor` is
deterministic and needs nothing but the text; :class:`LlmExtractor` asks a
chat-completion callable for strict JSON, validates it, retries once with the
validation error shown to the model, and otherwise skips the chunk with a logged
reason (logger ``agent_trio.ingest``). Errors raised by the callable itself
(upstream outages) propagate to the caller.

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
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent_trio.ingest._chunker import text_sentences
from agent_trio.ingest._model import (
    ENTITY_TYPES,
    Chunk,
    Entity,
    EntityType,
    Extraction,
    Fact,
    SourceDocument,
)

__all__ = ["Complete", "Extractor", "LlmExtractor", "RuleExtractor", "entity_key"]

logger = logging.getLogger("agent_trio.ingest")

#: an LLM chat completion: messages (``role``, ``content``) in, the answer's text out
Complete = Callable[[list[dict[str, str]]], Awaitable[str]]

RELATED_TO = "RELATED_TO"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


class Extractor(Protocol):
    """Finds entities and dated facts in a document's chunks."""

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction: ...


# -- names -----------------------------------------------------------------------------

_LEGAL_FORMS = _words(
    "inc incorporated corp corporation ltd limited llc llp gmbh ag sa plc co bv nv oy ab"
)
_KEY_PUNCTUATION = re.compile(r"[^\w\s&+-]")
_POSSESSIVE = re.compile(r"['’]s?$")


def entity_key(name: str) -> str:
    """The normalised form of an entity name that identifies it across documents.

    Case, accents' composition, punctuation, a leading "the", a possessive and a
    trailing legal form (Inc, GmbH, Ltd …) do not matter: ``"Corvid Systems GmbH"``
    and ``"corvid systems"`` have the same key.
    """
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = _POSSESSIVE.sub("", text)
    words = _KEY_PUNCTUATION.sub(" ", text).split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words = words[:-1]
    return " ".join(words)


# -- dates ---------------------------------------------------------------------------

_MONTHS: Mapping[str, int] = MappingProxyType(
    {
        name: number
        for number, names in enumerate(
            [
                ("January", "Jan"),
                ("February", "Feb"),
                ("March", "Mar"),
                ("April", "Apr"),
                ("May",),
                ("June", "Jun"),
                ("July", "Jul"),
                ("August", "Aug"),
                ("September", "Sep", "Sept"),
                ("October", "Oct"),
                ("November", "Nov"),
                ("December", "Dec"),
            ],
            start=1,
        )
        for name in names
    }
)
_MONTH = "(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_YEAR = r"(?:1[89]\d\d|2[01]\d\d)"
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_TO = r"\s*(?:-|–|to|and)\s*"
_DATE = re.compile(
    rf"\b(?P<iso>{_YEAR}-[01]\d-[0-3]\d)\b"
    rf"|\b(?P<mdy_m>{_MONTH})\s+(?P<mdy_d>{_DAY})(?:{_TO}{_DAY})?,?\s+(?P<mdy_y>{_YEAR})\b"
    rf"|\b(?P<dmy_d>{_DAY})(?:{_TO}{_DAY})?\s+(?:of\s+)?(?P<dmy_m>{_MONTH}),?\s+(?P<dmy_y>{_YEAR})\b"
    rf"|\b(?P<my_m>{_MONTH}),?\s+(?:of\s+)?(?P<my_y>{_YEAR})\b"
    rf"|\bQ(?P<q>[1-4])\s+(?P<q_y>{_YEAR})\b"
    r"|\b(?i:in|since|from|until|till|through|by|during|to|early|late|mid-?|before|after)"
    rf"\s+(?P<year>{_YEAR})\b"
)
_END_VERBS = (
    r"left|leaves|leaving|departed|departs|resigned|resigns|retired|ended|ends|ending"
    r"|end of|end-of-sale|end-of-life|expired|expires|discontinued|shut down|closed|ceased"
    r"|stopped|stepped down|no longer|sunset"
)
_START_VERBS = (
    r"began|begins|started|starts|joined|joins|founded|launched|released|acquired|became"
    r"|opened|signed|announced|raised|hired|appointed|named|moved|returned|partnered"
    r"|invested|took|shipped|unveiled|introduced|held|hosted"
)
_END_CUE = re.compile(rf"\b(?:until|till|through|{_END_VERBS})\b")
_START_CUE = re.compile(rf"\b(?:since|from|{_START_VERBS})\b")
_START_VERB = re.compile(rf"\b(?:{_START_VERBS})\b")
_RANGE_END = re.compile(r"\s*(?:to|through|until|till|–|—|-)\s*")


@dataclass(frozen=True, slots=True)
class _Date:
    start: int
    iso: str
    closes: bool


def _parse_date(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    try:
        if groups["iso"]:
            return dt.date.fromisoformat(groups["iso"]).isoformat()
        if groups["mdy_m"]:
            return _ymd(groups["mdy_y"], _MONTHS[groups["mdy_m"].rstrip(".")], groups["mdy_d"])
        if groups["dmy_m"]:
            return _ymd(groups["dmy_y"], _MONTHS[groups["dmy_m"].rstrip(".")], groups["dmy_d"])
        if groups["my_m"]:
            return _ymd(groups["my_y"], _MONTHS[groups["my_m"].rstrip(".")], "1")
        if groups["q"]:
            return _ymd(groups["q_y"], 3 * int(groups["q"]) - 2, "1")
        return _ymd(groups["year"], 1, "1")
    except ValueError:
        return None


def _ymd(year: str, month: int, day: str) -> str:
    return dt.date(int(year), month, int(day.rstrip("stndrh"))).isoformat()


def _dates(sentence: str) -> list[_Date]:
    """Dates in ``sentence``; ``closes`` when the nearest cue before it ends something."""
    found: list[_Date] = []
    segment_start = 0
    for match in _DATE.finditer(sentence):
        iso = _parse_date(match)
        if iso is None:
            continue
        segment = sentence[segment_start : match.start()]
        found.append(_Date(match.start(), iso, _closes(segment, after_date=bool(found))))
        segment_start = match.end()
    return found


def _closes(segment: str, *, after_date: bool) -> bool:
    segment = segment.casefold()
    if after_date and _RANGE_END.fullmatch(segment):
        return True
    ends = [m.start() for m in _END_CUE.finditer(segment)]
    starts = [m.start() for m in _START_CUE.finditer(segment)]
    return bool(ends) and (not starts or ends[-1] > starts[-1])


# -- entity mentions -------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_](?:[\w'’.&-]*[^\W_])?|&")
_LIST_MARKER = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)])\s+")
_INITIAL_CONTEXT = re.compile(r"(?:^|[:;\"“‘(]\s*|\s[–—-]\s)$")
_PERIOD = re.compile(r"\d+|q[1-4]|h[12]|fy\d{2}(?:\d{2})?")  # numbers, quarters, halves
_JOIN = re.compile(r"[ \t]+|[ \t]*\n[ \t]*")

_STOP = _words(
    "a about according across after also although among an and another any as at because "
    "before between both but by despite during each earlier early even every finally "
    "first following for from he her here his however i if in initially instead it its "
    "last later like many meanwhile more most my next no not now once one only or other "
    "our over per previously recently several she since so some soon still such that the "
    "their them then there these they this those though three through today together "
    "tomorrow two under unlike until we what when where whereas which while who why with "
    "within without yes yesterday you your"
)
_ROLES = _words(
    "ceo cto cfo coo cmo cio cpo vp svp evp chief officer president chair chairman "
    "chairwoman chairperson director founder co-founder cofounder head manager engineer "
    "executive vice senior lead principal professor partner dr mr mrs ms prof sir dame"
)
_TITLES = _words("dr mr mrs ms prof sir dame")
_TIME_WORDS = frozenset(
    {m.casefold() for m in _MONTHS}
    | _words("monday tuesday wednesday thursday friday saturday sunday")
)
_FUNCTION_WORDS = _words(
    "engineering operations marketing sales research product products technology finance "
    "strategy digital data design development infrastructure communications people "
    "partnerships business legal security"
)
_SEQUENCE_WORDS = _words("series round phase stage version chapter section figure table step part")
_PARTICLES = _words("& de van von der den da di du la le del")
_OF_HEADS = _words(
    "bank university institute ministry department museum college school council office "
    "board academy federation association"
)
_ORG_SUFFIXES = _LEGAL_FORMS | _words(
    "labs lab systems technologies technology group holdings ventures capital partners "
    "networks software robotics analytics energy bank university institute foundation "
    "company industries solutions dynamics media studios pharma therapeutics aerospace "
    "motors airlines logistics consulting associates agency"
)
_EVENT_WORDS = _words(
    "summit conference expo festival forum symposium hackathon week meetup congress fair "
    "convention workshop awards olympics"
)
_PLACE_SUFFIXES = _words(
    "city county province region state street avenue river lake mountain mountains island "
    "islands bay valley harbour harbor port airport station park field farm coast sea ocean "
    "gulf strait peninsula desert forest district"
)
_PRODUCT_NOUNS = _words(
    "gateway platform app application device sensor sensors dashboard service software "
    "tool toolkit model engine api chip drone drones robot camera kit module controller "
    "firmware suite library framework headset vehicle"
)
_LAUNCH_VERBS = _words(
    "launched launches released releases unveiled unveils introduced introduces shipped "
    "ships debuted debuts"
)
_PERSON_VERBS = _words(
    "said says told joined joins left leaves resigned retired explained added noted "
    "recalled stepped studied graduated spent became wrote believes thinks who"
)
_ORG_VERBS = _words("acquired acquires raised employs hired reported sells opened announced")
_ORG_PREPOSITIONS = _words("joined acquired of into")
_ORG_NOUNS = _words(
    "company firm startup start-up division subsidiary group utility investor maker "
    "manufacturer brand provider operator fund laboratory business agency supplier vendor "
    "retailer insurer consultancy developer publisher studio carrier airline"
)
_PLACE_PREPOSITIONS = _words("in near")
_PLACE_NOUNS = _words(
    "farm farms field district region city town village site harbour harbor port island "
    "coast valley county province municipality"
)
_RELATIVES = _words("whose which that where when and but or who")
_DEMONYM = re.compile(
    r"[a-z]+(?:ian|ese|ish|ean)|german|french|dutch|swiss|greek|thai|american|african|mexican"
)
_NOT_PLACE_BEFORE_IN = _words("invested invests investing interest stake role")


@dataclass(slots=True)
class _Mention:
    start: int
    end: int
    name: str
    key: str
    initial: bool
    votes: Counter[EntityType] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Token:
    start: int
    end: int
    text: str
    fold: str
    possessive: bool


def _tokens(sentence: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(sentence):
        start, end = match.span()
        possessive = sentence[end : end + 1] in {"'", "’"}
        if sentence[end - 2 : end] in {"'s", "’s"} and end - start > 2:
            end, possessive = end - 2, True
        text = sentence[start:end]
        tokens.append(_Token(start, end, text, text.casefold(), possessive))
    return tokens


def _capitalised(token: _Token) -> bool:
    first = token.text[0]
    if first.isupper():
        return True
    return any(c.isdigit() for c in token.text) and any(c.isupper() for c in token.text)


def _name_word(token: _Token) -> bool:
    """A capitalised word that can be part of a name (not a role, month or stop word)."""
    fold = token.fold.removesuffix("-based")
    return (
        _capitalised(token)
        and fold not in _ROLES
        and fold not in _TIME_WORDS
        and not _PERIOD.fullmatch(fold)
    )


def _runs(sentence: str, tokens: list[_Token]) -> list[list[int]]:
    """Indexes of maximal runs of name words joined by spaces or name particles."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, token in enumerate(tokens):
        if not _name_word(token):
            if current and _joins_as_particle(sentence, tokens, current, i):
                current.append(i)
                continue
            _flush_run(runs, current, tokens)
            current = []
            continue
        if current and not _adjacent(sentence, tokens[current[-1]], token):
            _flush_run(runs, current, tokens)
            current = []
        current.append(i)
        if token.possessive or token.fold.endswith("-based"):
            _flush_run(runs, current, tokens)
            current = []
    _flush_run(runs, current, tokens)
    return runs


def _adjacent(sentence: str, left: _Token, right: _Token) -> bool:
    return not left.possessive and _JOIN.fullmatch(sentence, left.end, right.start) is not None


def _joins_as_particle(sentence: str, tokens: list[_Token], run: list[int], i: int) -> bool:
    token = tokens[i]
    if i + 1 >= len(tokens) or not _name_word(tokens[i + 1]):
        return False
    if not _adjacent(sentence, tokens[run[-1]], token):
        return False
    if not _adjacent(sentence, token, tokens[i + 1]):
        return False
    if token.fold == "of":
        return tokens[run[-1]].fold in _OF_HEADS
    return token.fold in _PARTICLES


def _flush_run(runs: list[list[int]], run: list[int], tokens: list[_Token]) -> None:
    while run and tokens[run[0]].fold in _STOP | _PARTICLES | {"of"}:
        run = run[1:]
    while run and tokens[run[-1]].fold in _PARTICLES | {"of"}:
        run = run[:-1]
    if not run or all(tokens[i].fold in _FUNCTION_WORDS for i in run):
        return
    if tokens[run[0]].fold not in _SEQUENCE_WORDS:
        runs.append(run)


def _is_demonym(tokens: list[_Token], run: list[int]) -> bool:
    """A lone adjective of nationality before a common noun ("a German company")."""
    if len(run) != 1 or run[0] + 1 >= len(tokens):
        return False
    word, following = tokens[run[0]], tokens[run[0] + 1]
    if _capitalised(following) or following.fold in _PERSON_VERBS:
        return False
    return bool(_DEMONYM.fullmatch(word.fold))


def _sentence_mentions(sentence: str) -> list[_Mention]:
    tokens = _tokens(sentence)
    mentions = []
    for run in _runs(sentence, tokens):
        first, last = tokens[run[0]], tokens[run[-1]]
        name = sentence[first.start : last.end].removesuffix("-based")
        key = entity_key(name)
        if not key:
            continue
        initial = len(run) == 1 and _INITIAL_CONTEXT.search(sentence, 0, first.start) is not None
        if _is_demonym(tokens, run):
            continue
        mention = _Mention(first.start, first.start + len(name), name, key, initial)
        _vote(mention.votes, _context(sentence, tokens, run))
        mentions.append(mention)
    return mentions


@dataclass(frozen=True, slots=True)
class _Context:
    """A name and the words around it, folded to lower case."""

    words: list[str]
    before: list[str]
    after: list[str]
    following: list[_Token]
    comma_after: bool
    possessive: bool


def _context(sentence: str, tokens: list[_Token], run: list[int]) -> _Context:
    last = tokens[run[-1]]
    following = tokens[run[-1] + 1 : run[-1] + 6]
    return _Context(
        words=[tokens[i].fold for i in run],
        before=[t.fold for t in tokens[max(0, run[0] - 4) : run[0]]],
        after=[t.fold for t in following],
        following=following,
        comma_after=sentence.startswith(",", last.end),
        possessive=last.possessive,
    )


def _vote(votes: Counter[EntityType], context: _Context) -> None:
    for rule in (_name_cues, _person_cues, _org_cues, _place_cues, _product_cues):
        for kind, weight in rule(context):
            votes[kind] += weight


Cues = Iterable[tuple[EntityType, int]]


def _name_cues(c: _Context) -> Cues:
    if c.words[-1] in _ORG_SUFFIXES:
        yield "organization", 4
    if any(w in _EVENT_WORDS for w in c.words):
        yield "event", 4
    if c.words[-1] in _PLACE_SUFFIXES or c.words[-1].endswith("-based"):
        yield "place", 3
    if any(ch.isdigit() for w in c.words for ch in w):
        yield "product", 3


def _person_cues(c: _Context) -> Cues:
    if c.before[-1:] and c.before[-1] in _TITLES:
        yield "person", 4
    elif c.before[-1:] and c.before[-1] in _ROLES:
        yield "person", 3
    verb = c.after[0] if c.after else ""
    if verb in _PERSON_VERBS and not c.possessive and (verb == "who" or not c.comma_after):
        yield "person", 2
    if _apposition(c) == "role":
        yield "person", 4  # "Lena Vogt, chief executive of …"


def _org_cues(c: _Context) -> Cues:
    if not c.comma_after and c.after[:1] and c.after[0] in _ROLES:
        yield "organization", 2  # "Kestrel CEO", "Kestrel's chief executive"
    if c.after[:1] and c.after[0] in _ORG_VERBS and not c.possessive:
        yield "organization", 1
    if c.before[-1:] and c.before[-1] in _ORG_PREPOSITIONS:
        yield "organization", 1
    if c.before[-1:] and c.before[-1] in _ORG_NOUNS:
        yield "organization", 2  # "the growth investor Moraine Ventures"
    if _apposition(c) == "organization":
        yield "organization", 2  # "Corvid, a German company …"


def _place_cues(c: _Context) -> Cues:
    before = c.before[:-1] if c.before[-1:] == ["the"] else c.before
    if before[-1:] and before[-1] in _PLACE_PREPOSITIONS:
        if len(before) < 2 or before[-2] not in _NOT_PLACE_BEFORE_IN:
            yield "place", 2
    elif c.before[-1:] == ["from"]:
        yield "place", 1
    lower_after = [t.fold for t in c.following[:3] if not _capitalised(t)]
    if not c.possessive and any(w in _PLACE_NOUNS for w in lower_after):
        yield "place", 2  # "the Skarv offshore wind farm"


def _product_cues(c: _Context) -> Cues:
    if any(b in _LAUNCH_VERBS for b in c.before[-3:]):
        yield "product", 2
    if c.after[:1] and c.after[0] in _PRODUCT_NOUNS and not c.possessive:
        yield "product", 2


def _apposition(c: _Context) -> str | None:
    """What a phrase after a comma says the name is: "role", "organization" or nothing.

    "Lena Vogt, the chief executive" (role) and "Corvid, a German company"
    (organization); a relative clause ("Kestrel, whose chief …") says neither.
    """
    if not c.comma_after or not c.following or c.after[0] in _RELATIVES:
        return None
    for token in c.following[:5]:
        if token.fold in _ROLES:
            return "role"
        if token.fold in _ORG_NOUNS and not token.possessive:
            return "organization"
    return None


# -- relations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cue:
    relation: str
    pattern: re.Pattern[str]
    reverse: bool = False


def _cue(relation: str, words: str, *, reverse: bool = False) -> _Cue:
    return _Cue(relation, re.compile(rf"\b(?:{words})\b"), reverse)


_CUES = (
    _cue("ACQUIRED", r"acquir(?:e|es|ed|ing)|bought|buys|purchas(?:e|es|ed)|took over|takeover of"),
    _cue("MERGED_WITH", r"merged with|merger with|merges with"),
    _cue("FOUNDED", r"(?:co-?)?found(?:ed|s|ing)|(?:co-?)?founders? of|establish(?:ed|es)"),
    _cue(
        "INVESTED_IN",
        r"raised|secured|closed (?:a|its|the)|round led by|funding from|investment from",
        reverse=True,
    ),
    _cue(
        "INVESTED_IN",
        r"invest(?:ed|s|ing)?(?: [^\s.;]+){0,5} in|investment in|backed|funded|participated in"
        r"|(?:co-)?led (?:the|a|an|its|their) [^.;]*?(?:round|investment)",
    ),
    _cue(
        "PARTNERED_WITH",
        r"partner(?:ed|s|ing)? with|partnership with|teamed up with"
        r"|collaborat(?:e|es|ed|ing) with|alliance with|agreement with",
    ),
    _cue(
        "LEADS",
        r"ceo of|chief executive of|cto of|head of|heads|leads|runs|president of|chair of"
        r"|director of|managing director of|vice president of|vp of",
    ),
    _cue(
        "WORKS_AT",
        r"join(?:ed|s|ing)|works? (?:at|for)|worked (?:at|for)|employed (?:at|by)|hired by"
        r"|left|leaves|leaving|resigned from|departed|stepped down",
    ),
    _cue("HIRED", r"hired|hires|appointed|recruited"),
    _cue(
        "LAUNCHED",
        r"launch(?:ed|es)?|releas(?:ed|es)|unveil(?:ed|s)|introduc(?:ed|es)|ship(?:ped|s)"
        r"|debut(?:ed|s)|rolled out",
    ),
    _cue("DEVELOPED", r"develop(?:ed|s)|buil(?:t|ds)|design(?:ed|s)|creat(?:ed|es)|makes|made"),
    _cue("SPOKE_AT", r"spoke at|speaks at|presented at|keynote at|talk at|exhibited at"),
    _cue(
        "LOCATED_IN",
        r"based in|headquartered in|located in|held in|took place in|offices? in|opened [^.;]*in",
    ),
    _cue("HOSTED", r"host(?:ed|s)|organi[sz](?:ed|es)"),
    _cue("USES", r"uses|used|deploy(?:ed|s)|adopt(?:ed|s)|install(?:ed|s)"),
    _cue("COMPETES_WITH", r"compet(?:es|ed|ing) with|competitor of|rival of|rivals"),
)
_PASSIVE_BY = re.compile(r"\s+by\b")
_PASSIVE = re.compile(r"\b(?:was|were|is|are|been|being)\s+(?:\w+ly\s+)?([a-z-]+)\b", re.I)
_AGENT = re.compile(r"\bby\s*$", re.I)
_COORDINATION = re.compile(r"\s*(?:,\s*)?(?:and\s+|or\s+)?", re.I)
_ENDS_WITH_PLACE_PREPOSITION = re.compile(r"\b(?:in|near)(?:\s+the)?\s*$")
_ENDS_WITH_MEMBERSHIP = re.compile(r"\b(?:at|for|of|with)(?:\s+the)?\s*$")


def _relation(between: str, subject: EntityType, obj: EntityType) -> tuple[str, bool]:
    """The relation stated by the text between two entities, and whether it runs backwards."""
    text = between.casefold()
    if obj == "place" and _ENDS_WITH_PLACE_PREPOSITION.search(text):
        return "LOCATED_IN", False  # "… founded in Lisbon", "held in Rotterdam"
    for cue in _CUES:
        match = cue.pattern.search(text)
        if match is not None:
            return cue.relation, cue.reverse or bool(_PASSIVE_BY.match(text, match.end()))
    if subject == "person" and obj == "organization" and _ENDS_WITH_MEMBERSHIP.search(text):
        return "WORKS_AT", False  # "Daniel Osei of Arden Capital"
    return RELATED_TO, False


# -- the rule extractor ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sentence:
    chunk_index: int
    text: str
    mentions: tuple[_Mention, ...]


class RuleExtractor:
    """Deterministic extraction from the text alone (see the module doc for the rules)."""

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction:
        seen: set[str] = set()
        sentences: list[_Sentence] = []
        for chunk in chunks:
            await trio.lowlevel.checkpoint()
            for text in _chunk_sentences(chunk.text):
                if text not in seen:
                    seen.add(text)
                    sentences.append(_Sentence(chunk.index, text, tuple(_sentence_mentions(text))))
        return _resolve(sentences)


def _chunk_sentences(text: str) -> Iterable[str]:
    for start, end in text_sentences(text):
        sentence = " ".join(text[start:end].split())
        marker = _LIST_MARKER.match(sentence)
        yield sentence[marker.end() :] if marker else sentence


def _resolve(sentences: list[_Sentence]) -> Extraction:
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
    org_heads = {k.split()[0] for k, c in votes.items() if _winner(c) == "organization"}
    types = {
        key: _winner(counter) if counter.total() else _unmarked_type(names[key], org_heads)
        for key, counter in votes.items()
    }
    entities = tuple(Entity(names[key], key, types[key]) for key in sorted(votes))
    facts = _facts(sentences, kept, aliases, types)
    return Extraction(entities=entities, facts=facts)


def _unmarked_type(name: str, org_heads: set[str]) -> EntityType:
    """The type of a name that no cue typed: a sibling of an organization, a personal name."""
    words = name.split()
    if len(words) > 1 and entity_key(words[0]) in org_heads:
        return "organization"  # "Corvid Telemetry" beside "Corvid Systems"
    if 2 <= len(words) <= 3 and all(w.isalpha() for w in words):
        return "person"
    return "other"


def _winner(votes: Counter[EntityType]) -> EntityType:
    best = max(ENTITY_TYPES, key=lambda t: (votes[t], -ENTITY_TYPES.index(t)))
    return best if votes[best] > 0 else "other"


def _aliases(mentions: list[_Mention]) -> dict[str, str]:
    """Single-word keys that name exactly one longer entity of the document."""
    votes: dict[str, Counter[EntityType]] = defaultdict(Counter)
    for mention in mentions:
        votes[mention.key].update(mention.votes)
    counts = Counter(mention.key for mention in mentions)
    long_keys = [key for key in votes if " " in key]
    aliases: dict[str, str] = {}
    for key in votes:
        if " " in key:
            continue
        targets = sorted(
            (
                long
                for long in long_keys
                if long.split()[0] == key
                or (long.split()[-1] == key and _personal(long, votes[long]))
            ),
            key=lambda long: (-counts[long], long),
        )
        # the only candidate, or the one the document names clearly most often
        if len(targets) == 1 or (len(targets) > 1 and counts[targets[0]] > counts[targets[1]]):
            aliases[key] = targets[0]
    return aliases


def _personal(key: str, votes: Counter[EntityType]) -> bool:
    if votes.total():
        return _winner(votes) == "person"
    return 2 <= len(key.split()) <= 3 and all(w.isalpha() for w in key.split())


def _facts(
    sentences: list[_Sentence],
    kept: set[int],
    aliases: dict[str, str],
    types: dict[str, EntityType],
) -> tuple[Fact, ...]:
    facts: dict[tuple[str, str, str, str], Fact] = {}
    for sentence in sentences:
        ordered = _distinct_neighbours([m for m in sentence.mentions if id(m) in kept], aliases)
        if len(ordered) < 2:
            continue
        dates = _dates(sentence.text)
        found = [_fact(sentence, ordered, i, dates, types) for i in range(len(ordered) - 1)]
        found += _passive_facts(sentence, ordered, dates)
        for fact in found:
            facts.setdefault(_fact_identity(fact), fact)
    return tuple(facts.values())


def _passive_facts(
    sentence: _Sentence, ordered: list[tuple[_Mention, str]], dates: list[_Date]
) -> list[Fact]:
    """Facts of a passive clause: "Kestrel Labs was founded in Lisbon by Ines Marlow and …".

    The agents after ``by`` (and those joined to them by "and" or a comma) relate to
    the sentence's first entity, even when other names stand between them.
    """
    text = sentence.text
    (subject, subject_key), rest = ordered[0], ordered[1:]
    verb = _PASSIVE.search(text, subject.end)
    if verb is None:
        return []
    word = verb.group(1).casefold()
    relation = next((c.relation for c in _CUES if c.pattern.fullmatch(word)), None)
    if relation is None:
        return []
    facts = []
    previous_end, agent = verb.end(), False
    for i, (mention, key) in enumerate(rest):
        if mention.start < verb.end():
            continue
        gap = text[previous_end : mention.start]
        agent = bool(_AGENT.search(gap)) or (agent and bool(_COORDINATION.fullmatch(gap)))
        previous_end = mention.end
        if agent and key != subject_key:
            scope_end = rest[i + 1][0].start if i + 1 < len(rest) else len(text)
            bounds = (subject.end, mention.start, mention.end, scope_end)
            scoped = _fact_dates(text, dates, bounds) or _leading(dates, subject.start)
            valid_at = next((d.iso for d in scoped if not d.closes), None)
            invalid_at = next((d.iso for d in scoped if d.closes), None)
            facts.append(
                Fact(
                    key,
                    subject_key,
                    relation,
                    sentence.text,
                    valid_at,
                    invalid_at,
                    sentence.chunk_index,
                )
            )
    return facts


def _fact_identity(fact: Fact) -> tuple[str, str, str, str]:
    return (fact.subject_key, fact.object_key, fact.relation, fact.sentence)


def _distinct_neighbours(
    mentions: list[_Mention], aliases: dict[str, str]
) -> list[tuple[_Mention, str]]:
    ordered: list[tuple[_Mention, str]] = []
    for mention in sorted(mentions, key=lambda m: m.start):
        key = aliases.get(mention.key, mention.key)
        if not ordered or ordered[-1][1] != key:
            ordered.append((mention, key))
    return ordered


def _fact(
    sentence: _Sentence,
    ordered: list[tuple[_Mention, str]],
    i: int,
    dates: list[_Date],
    types: dict[str, EntityType],
) -> Fact:
    (left, left_key), (right, right_key) = ordered[i], ordered[i + 1]
    between = sentence.text[left.end : right.start]
    relation, reverse = _relation(between, types[left_key], types[right_key])
    scope_end = ordered[i + 2][0].start if i + 2 < len(ordered) else len(sentence.text)
    scoped = _fact_dates(sentence.text, dates, (left.end, right.start, right.end, scope_end))
    scoped = scoped or _leading(dates, ordered[0][0].start)
    valid_at = next((d.iso for d in scoped if not d.closes), None)
    invalid_at = next((d.iso for d in scoped if d.closes), None)
    subject, obj = (right_key, left_key) if reverse else (left_key, right_key)
    return Fact(subject, obj, relation, sentence.text, valid_at, invalid_at, sentence.chunk_index)


def _fact_dates(text: str, dates: list[_Date], bounds: tuple[int, int, int, int]) -> list[_Date]:
    """Dates between the two names, else after the second in the same clause.

    A date after the second name belongs to the fact unless a verb that starts
    something else comes first ("X founded Y, which launched a product in 2021");
    a verb that ends something closes the fact ("X joined Y and left in 2021").
    Failing both, the caller uses :func:`_leading` dates ("In May 2021, …").
    """
    left_end, right_start, right_end, scope_end = bounds
    inside = [d for d in dates if left_end <= d.start < right_start]
    if inside:
        return inside
    return [
        d
        for d in dates
        if right_end <= d.start < scope_end and not _states_relation(text[right_end : d.start])
    ]


def _leading(dates: list[_Date], first_name: int) -> list[_Date]:
    """Dates that open the sentence, before its first name: they date every fact in it."""
    return [d for d in dates if d.start < first_name]


def _states_relation(text: str) -> bool:
    """Whether ``text`` has a verb that starts another relation (ending ones don't count)."""
    folded = _END_CUE.sub(" ", text.casefold())
    return bool(_START_VERB.search(folded)) or any(c.pattern.search(folded) for c in _CUES)


# -- the LLM extractor -----------------------------------------------------------------

_TYPE_SYNONYMS: Mapping[str, EntityType] = MappingProxyType(
    {
        "organisation": "organization",
        "company": "organization",
        "org": "organization",
        "location": "place",
        "city": "place",
        "country": "place",
        "people": "person",
    }
)

_SYSTEM_PROMPT = """\
You extract a knowledge graph from one passage of a document.
Answer with a single JSON object and nothing else, of this shape:
{"entities": [{"name": "...", "type": "person|organization|product|place|event|other"}],
 "facts": [{"subject": "...", "object": "...", "relation": "...", "sentence": "...",
            "valid_at": "YYYY-MM-DD or null", "invalid_at": "YYYY-MM-DD or null"}]}
Rules:
- entities: the named people, organizations, products, places and events in the passage,
  names written as in the passage.
- facts: relationships between two of those entities that the passage states. subject and
  object are names from "entities". relation is a short verb in UPPER_SNAKE_CASE, such as
  FOUNDED, ACQUIRED, WORKS_AT, LEADS, LAUNCHED, PARTNERED_WITH, INVESTED_IN, LOCATED_IN or
  RELATED_TO. sentence is the sentence of the passage that states the fact, copied exactly.
- valid_at is the date from which the fact holds and invalid_at the date on which it stopped
  holding, only when the passage says so; otherwise null. A month alone means its first day,
  a year alone January 1.
- State nothing that the passage does not say."""


_RETRY_PROMPT = (
    "That answer is not valid: {problem}. Reply again with only the JSON object described above."
)
_ATTEMPTS = 2


class _LlmEntity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=300)
    type: EntityType = "other"

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> str:
        text = str(value).strip().casefold() if value is not None else "other"
        text = _TYPE_SYNONYMS.get(text, text)
        return text if text in ENTITY_TYPES else "other"


class _LlmFact(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str = Field(min_length=1)
    object: str = Field(min_length=1)
    relation: str = RELATED_TO
    sentence: str = Field(min_length=1)
    valid_at: str | None = None
    invalid_at: str | None = None

    @field_validator("relation")
    @classmethod
    def _upper_snake(cls, value: str) -> str:
        snake = re.sub(r"[^A-Za-z0-9]+", "_", value).strip("_").upper()[:40]
        return snake or RELATED_TO

    @field_validator("valid_at", "invalid_at", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value.strip().casefold() in {"", "null"}):
            return None
        return _normalise_iso(str(value).strip())


class _LlmOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entities: list[_LlmEntity] = Field(default_factory=list)
    facts: list[_LlmFact] = Field(default_factory=list)


def _normalise_iso(text: str) -> str:
    """An ISO-8601 date or date-time as a UTC date; a year-month or year as its first day."""
    if re.fullmatch(r"\d{4}", text):
        text += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date (YYYY-MM-DD)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.date().isoformat()


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


def _parse_output(answer: str) -> _LlmOutput:
    """Validate an answer; a code fence or text around the object is tolerated."""
    text = _FENCE.sub("", answer)
    first, last = text.find("{"), text.rfind("}")
    if first != -1 and last > first:
        text = text[first : last + 1]
    return _LlmOutput.model_validate_json(text)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def _squash(text: str) -> str:
    return " ".join(text.split())


class LlmExtractor:
    """Extraction by an LLM, one call per chunk, through ``complete``.

    ``complete`` gets chat messages and returns the answer's text; its errors
    propagate. An answer that is not valid JSON of the expected shape is retried
    once with the problem stated; a second bad answer skips the chunk.
    """

    def __init__(self, complete: Complete) -> None:
        self._complete = complete

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction:
        merged = _Merged()
        for chunk in chunks:
            output = await self._ask(doc, chunk)
            if output is not None:
                merged.add(doc, chunk, output)
        return merged.result()

    async def _ask(self, doc: SourceDocument, chunk: Chunk) -> _LlmOutput | None:
        messages = [
            {"role": "system", "content": _SYSTEM_PROMPT},
            {"role": "user", "content": f"Document: {doc.title}\n\nPassage:\n{chunk.text}"},
        ]
        for attempt in range(1, _ATTEMPTS + 1):
            answer = await self._complete(messages)
            try:
                return _parse_output(answer)
            except ValidationError as exc:
                problem = _describe(exc)
            if attempt < _ATTEMPTS:  # show the model its mistake
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": _RETRY_PROMPT.format(problem=problem)},
                ]
        logger.warning(
            "%s: chunk %d skipped: the model answered %d times without valid JSON (%s)",
            doc.source,
            chunk.index,
            _ATTEMPTS,
            problem,
        )
        return None


@dataclass
class _Merged:
    entities: dict[str, Entity] = field(default_factory=dict)
    facts: dict[tuple[str, str, str, str], Fact] = field(default_factory=dict)

    def add(self, doc: SourceDocument, chunk: Chunk, output: _LlmOutput) -> None:
        names: dict[str, str] = {}
        for item in output.entities:
            key = entity_key(item.name)
            if not key:
                continue
            names[key] = item.name
            known = self.entities.get(key)
            if known is None or (known.type == "other" and item.type != "other"):
                self.entities[key] = Entity(item.name.strip(), key, item.type)
        passage = _squash(chunk.text)
        for fact in output.facts:
            reason = _fact_problem(fact, names, passage)
            if reason is not None:
                logger.info("%s: chunk %d: fact dropped: %s", doc.source, chunk.index, reason)
                continue
            found = Fact(
                subject_key=entity_key(fact.subject),
                object_key=entity_key(fact.object),
                relation=fact.relation,
                sentence=_squash(fact.sentence),
                valid_at=fact.valid_at,
                invalid_at=fact.invalid_at,
                chunk_index=chunk.index,
            )
            self.facts.setdefault(_fact_identity(found), found)

    def result(self) -> Extraction:
        return Extraction(tuple(self.entities.values()), tuple(self.facts.values()))


def _fact_problem(fact: _LlmFact, names: dict[str, str], passage: str) -> str | None:
    subject, obj = entity_key(fact.subject), entity_key(fact.object)
    for role, key, name in (("subject", subject, fact.subject), ("object", obj, fact.object)):
        if key not in names:
            return f"{role} {name!r} is not among the entities of the passage"
    if subject == obj:
        return f"subject and object are the same entity {fact.subject!r}"
    if _squash(fact.sentence) not in passage:
        return f"sentence {fact.sentence[:80]!r} is not in the passage"
    return None
