"""What a chat run produces, as it goes: one event model for the LLM loop and the
extractive answerer. ``/chat`` collects the events; ``/chat/stream`` frames them.

* :class:`AnswerText`: a piece of the answer's text (a delta);
* :class:`ToolUse`: a tool the run called, with its arguments;
* :class:`SourcesFound`: the document chunks a search found.

A run hands each event to an :data:`Emit` callback as soon as it has it. A
:class:`Transcript` keeps what was produced so far (the text, the tools, the best
score of each source), so that even a run cut short leaves a message behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_trio.graph import ChunkHit

__all__ = ["AnswerText", "ChatEvent", "Emit", "Source", "SourcesFound", "ToolUse", "Transcript"]


@dataclass(frozen=True, slots=True)
class Source:
    """A chunk an answer draws on (the contract's ``sources`` items)."""

    document_id: str
    document_title: str
    document_source: str
    chunk_id: str
    score: float

    @classmethod
    def from_chunk(cls, chunk: ChunkHit) -> Source:
        return cls(
            chunk.document_id,
            chunk.document_title,
            chunk.document_source,
            chunk.chunk_id,
            round(chunk.score, 6),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "document_title": self.document_title,
            "document_source": self.document_source,
            "chunk_id": self.chunk_id,
            "score": self.score,
        }


@dataclass(frozen=True, slots=True)
class AnswerText:
    content: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    tool_name: str
    args: Mapping[str, Any]
    tool_call_id: str

    def to_api(self) -> dict[str, Any]:
        return {
            "tool_name": self.tool_name,
            "args": dict(self.args),
            "tool_call_id": self.tool_call_id,
        }


@dataclass(frozen=True, slots=True)
class SourcesFound:
    sources: tuple[Source, ...]

    def to_api(self) -> list[dict[str, Any]]:
        return [s.to_api() for s in self.sources]


ChatEvent = AnswerText | ToolUse | SourcesFound
Emit = Callable[[ChatEvent], Awaitable[None]]


@dataclass
class Transcript:
    """Everything a run has produced so far."""

    parts: list[str] = field(default_factory=list)
    tools: list[ToolUse] = field(default_factory=list)
    _sources: dict[str, Source] = field(default_factory=dict)

    def record(self, event: ChatEvent) -> None:
        if isinstance(event, AnswerText):
            self.parts.append(event.content)
        elif isinstance(event, ToolUse):
            self.tools.append(event)
        else:
            for source in event.sources:
                known = self._sources.get(source.chunk_id)
                if known is None or source.score > known.score:
                    self._sources[source.chunk_id] = source

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def sources(self) -> list[Source]:
        """Best score first."""
        return sorted(self._sources.values(), key=lambda s: -s.score)
