"""Time spent waiting for limiters, tallied by whoever waits.

Each owner of limiters (the graph gateway, the knowledge store, an upstream
client, the service for its chat slots) keeps a :class:`WaitTally` and adds the
wait of every acquisition to it, keyed by the limiter itself::

    started = trio.current_time()
    async with limiter:
        self.waits.add(limiter, trio.current_time() - started)

Nothing else is measured and nothing is sent anywhere: ``/metrics`` reads the
tallies when it is scraped (the service names each limiter). A wait that is
cancelled is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WaitStats", "WaitTally"]


@dataclass(frozen=True, slots=True)
class WaitStats:
    """Acquisitions of one limiter, and the seconds they waited in all."""

    count: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> WaitStats:
        return cls(int(data["count"]), float(data["seconds"]))


class _Entry:
    __slots__ = ("count", "limiter", "seconds")

    def __init__(self, limiter: object) -> None:
        self.limiter = limiter  # kept alive, so its id is never reused meanwhile
        self.count = 0
        self.seconds = 0.0


class WaitTally:
    """Waits per limiter object: how many, and how long in all."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}

    def add(self, limiter: object, seconds: float) -> None:
        entry = self._entries.get(id(limiter))
        if entry is None:
            entry = self._entries[id(limiter)] = _Entry(limiter)
        entry.count += 1
        entry.seconds += seconds

    def of(self, limiter: object) -> WaitStats:
        entry = self._entries.get(id(limiter))
        return WaitStats() if entry is None else WaitStats(entry.count, entry.seconds)
