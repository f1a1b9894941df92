"""The agent room: the chat turn, the LLM tool loop, its tools, and the extractive answerer.

Nothing here imports Quart: the routes in ``agent_trio.app`` call :class:`Chat` and
turn its events (:data:`ChatEvent`) into a JSON answer or server-sent events.
"""

from agent_trio.agent._chat import Chat, ChatRequest, ChatResult
from agent_trio.agent._events import (
    AnswerText,
    ChatEvent,
    Emit,
    Source,
    SourcesFound,
    ToolUse,
    Transcript,
)
from agent_trio.agent._extractive import EXTRACTIVE_MODEL, ExtractiveAnswerer, compose_answer
from agent_trio.agent._loop import SYSTEM_PROMPT, AgentLoop, history_messages
from agent_trio.agent._tools import TOOL_SPECS, Toolbox, ToolOutcome

__all__ = [
    "EXTRACTIVE_MODEL",
    "SYSTEM_PROMPT",
    "TOOL_SPECS",
    "AgentLoop",
    "AnswerText",
    "Chat",
    "ChatEvent",
    "ChatRequest",
    "ChatResult",
    "Emit",
    "ExtractiveAnswerer",
    "Source",
    "SourcesFound",
    "ToolOutcome",
    "ToolUse",
    "Toolbox",
    "Transcript",
    "compose_answer",
    "history_messages",
]
