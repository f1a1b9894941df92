"""What goes to and comes from an OpenAI-compatible ``/chat/completions`` endpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Completion",
    "Message",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallReady",
    "ToolSpec",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for. ``arguments`` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object; raises ``ValueError`` if the model wrote bad JSON."""
        value = json.loads(self.arguments or "{}")
        if isinstance(value, dict):
            return value
        raise ValueError(f"tool call {self.name!r}: arguments are not a JSON object")

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str, *, name: str | None = None) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id, name=name)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            wire["tool_calls"] = [call.to_wire() for call in self.tool_calls]
        if self.tool_call_id is not None:
            wire["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            wire["name"] = self.name
        return wire


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_wire(cls, data: Any) -> Usage | None:
        if not isinstance(data, dict):
            return None
        prompt = _int(data.get("prompt_tokens"))
        completion = _int(data.get("completion_tokens"))
        total = _int(data.get("total_tokens")) or prompt + completion
        return cls(prompt, completion, total)


@dataclass(frozen=True, slots=True)
class Completion:
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None
    model: str
    finish_reason: str | None = None

    def to_message(self) -> Message:
        """The assistant message to append to the conversation."""
        return Message.assistant(self.content, self.tool_calls)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, as it arrives."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallReady:
    """A tool call, assembled from its deltas (sent once the model finished it)."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a stream: the whole answer, and usage if the server sent it."""

    completion: Completion


StreamEvent = TextDelta | ToolCallReady | StreamEnd


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
