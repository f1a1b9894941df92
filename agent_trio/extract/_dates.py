"""Dates in text, as ISO dates, and whether each one opens or closes what it dates.

A sentence's dates are ISO dates (``2021-03-04``), ``March 3, 2021``, ``3 March
2021``, ``March 2021``, ``Q3 2021`` and a year after a preposition (``in 2019``);
a month alone means its first day, a quarter its first month, a year January 1.
A date closes something (``invalid_at``) when the nearest cue before it is
``until``, ``left``, ``ended`` … or when it ends a range; otherwise it opens it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "END_CUE",
    "MONTHS",
    "START_VERB",
    "DateMention",
    "normalise_iso",
    "sentence_dates",
]

#: month names and abbreviations -> month number
MONTHS: Mapping[str, int] = MappingProxyType(
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
_MONTH = "(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
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
#: every date above has a year: a sentence without one has no date
_ANY_YEAR = re.compile(_YEAR)
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
#: a word that ends what a following date dates (in case-folded text)
END_CUE = re.compile(rf"\b(?:until|till|through|{_END_VERBS})\b")
_START_CUE = re.compile(rf"\b(?:since|from|{_START_VERBS})\b")
#: a verb that starts something (in case-folded text)
START_VERB = re.compile(rf"\b(?:{_START_VERBS})\b")
_RANGE_END = re.compile(r"\s*(?:to|through|until|till|–|—|-)\s*")


@dataclass(frozen=True, slots=True)
class DateMention:
    """A date at offset ``start`` of a sentence; ``closes`` when it ends what it dates."""

    start: int
    iso: str
    closes: bool


def sentence_dates(sentence: str) -> list[DateMention]:
    """Dates in ``sentence``; ``closes`` when the nearest cue before it ends something."""
    found: list[DateMention] = []
    if _ANY_YEAR.search(sentence) is None:  # most sentences: skip the long pattern
        return found
    segment_start = 0
    for match in _DATE.finditer(sentence):
        iso = _parse_date(match)
        if iso is None:
            continue
        segment = sentence[segment_start : match.start()]
        found.append(DateMention(match.start(), iso, _closes(segment, after_date=bool(found))))
        segment_start = match.end()
    return found


def _parse_date(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    try:
        if groups["iso"]:
            return dt.date.fromisoformat(groups["iso"]).isoformat()
        if groups["mdy_m"]:
            return _ymd(groups["mdy_y"], _month(groups["mdy_m"]), groups["mdy_d"])
        if groups["dmy_m"]:
            return _ymd(groups["dmy_y"], _month(groups["dmy_m"]), groups["dmy_d"])
        if groups["my_m"]:
            return _ymd(groups["my_y"], _month(groups["my_m"]), "1")
        if groups["q"]:
            return _ymd(groups["q_y"], 3 * int(groups["q"]) - 2, "1")
        return _ymd(groups["year"], 1, "1")
    except ValueError:
        return None


def _month(name: str) -> int:
    return MONTHS[name.rstrip(".")]


def _ymd(year: str, month: int, day: str) -> str:
    return dt.date(int(year), month, int(day.rstrip("stndrh"))).isoformat()


def _closes(segment: str, *, after_date: bool) -> bool:
    segment = segment.casefold()
    if after_date and _RANGE_END.fullmatch(segment):
        return True
    ends = [m.start() for m in END_CUE.finditer(segment)]
    starts = [m.start() for m in _START_CUE.finditer(segment)]
    return bool(ends) and (not starts or ends[-1] > starts[-1])


def normalise_iso(text: str) -> str:
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
