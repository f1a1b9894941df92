"""Reading one sample out of a ``/metrics`` page (Prometheus text exposition)."""

from __future__ import annotations

__all__ = ["sample_value"]


def sample_value(text: str, sample: str) -> float:
    """The value of ``sample``, written as the page writes it: the name and its labels
    in their order (``agent_trio_upstream_concurrency{upstream="llm"}``); exactly one
    line must hold it."""
    (line,) = [x for x in text.splitlines() if x.startswith(sample + " ")]
    return float(line.rsplit(" ", 1)[1])
