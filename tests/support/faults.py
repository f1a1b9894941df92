"""Faults for the upstream fakes, chosen per request number by a seeded RNG (never by time).

:class:`Faults` names, for request ``n`` of an upstream, one of
:data:`~tests.support.fake_embeddings.FAULTS` (``stall``, ``cut``, ``429``, ``500``,
``garbage``) or none, each at its own rate; the same seed and number always give
the same fault, whatever the machine's speed or the order requests arrive in.
:meth:`Faults.llm_script` wraps a :data:`~tests.support.fake_llm.Script` so that the
fake LLM misbehaves so; :meth:`Faults.embedding_fault` is the fake embeddings API's
``fault`` hook. Both count what they injected (``injected``), and do nothing until
:attr:`Faults.active` is set (so that a corpus can be ingested first).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_llm import Calls, Cut, Fail, Garbage, Reply, Script, Stall, Text

__all__ = ["Faults"]

#: malformed answers to a streamed completion: a body that is not JSON at all, and
#: an event stream whose event is not JSON
_LLM_GARBAGE = (
    Garbage(b"this is not json"),
    Garbage(b"data: {not json\n\n", "text/event-stream"),
)


@dataclass
class Faults:
    """Rates (0..1) of each fault, per upstream request; see the module docstring.

    ``stall_seconds`` is how long a stalled request waits before it is answered (make
    it longer than the client's per-attempt deadline to inject a timeout);
    ``retry_after`` is the ``Retry-After`` of an injected 429.
    """

    stall: float = 0.02
    cut: float = 0.02
    throttle: float = 0.02
    error: float = 0.02
    garbage: float = 0.02
    seed: int = 1
    stall_seconds: float = 5.0
    retry_after: float = 0.05
    active: bool = False
    injected: Counter[str] = field(default_factory=Counter)

    def choose(self, upstream: str, number: int) -> str | None:
        """The fault of request ``number`` (from 0) to ``upstream``, or None."""
        if not self.active:
            return None
        roll = random.Random(f"{self.seed}:{upstream}:{number}").random()
        for name, rate in (
            ("stall", self.stall),
            ("cut", self.cut),
            ("429", self.throttle),
            ("500", self.error),
            ("garbage", self.garbage),
        ):
            if roll < rate:
                self.injected[f"{upstream} {name}"] += 1
                return name
            roll -= rate
        return None

    def embedding_fault(self, number: int) -> str | None:
        """The fake embeddings API's ``fault`` hook."""
        return self.choose("embedding", number)

    def llm_script(self, script: Script) -> Script:
        """``script``, with request ``n``'s reply replaced by its fault, if it has one."""

        def reply(number: int, body: dict[str, Any]) -> Reply:
            base = _reply_of(script, number, body)
            fault = self.choose("llm", number)
            if fault is None or not isinstance(base, Text | Calls):
                return base
            if fault == "stall":
                return Stall(self.stall_seconds, base)
            if fault == "cut":  # before the head, or after one or two chunks
                return Cut(after=number % 3, then=base)
            if fault == "429":
                return Fail(429, retry_after=self.retry_after, message="injected rate limit")
            if fault == "500":
                return Fail(500)
            return _LLM_GARBAGE[number % len(_LLM_GARBAGE)]

        return reply


def _reply_of(script: Script, number: int, body: dict[str, Any]) -> Reply:
    if callable(script):
        return script(number, body)
    replies = list(script)
    return replies[min(number, len(replies) - 1)]
