"""The agent loop over the OpenAI-compatible tool-calling protocol.

One *step* is one model turn, streamed: its text goes out as it arrives, each tool
call as soon as the model finished writing it. When the turn asked for tools, they
run concurrently (:meth:`Toolbox.run_all`), their results go back as ``tool``
messages, and the next step begins. The last allowed step (``max_steps``) offers no
tools, so the model has to answer with what it found.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agent_trio.agent._events import AnswerText, Emit, SourcesFound, ToolUse
from agent_trio.agent._tools import TOOL_SPECS, Toolbox
from agent_trio.graph import MessageRow
from agent_trio.upstream import (
    Completion,
    LlmClient,
    Message,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallReady,
)

__all__ = ["SYSTEM_PROMPT", "AgentLoop", "history_messages"]

log = logging.getLogger("agent_trio.agent")

SYSTEM_PROMPT = """\
You are a research assistant for a knowledge base of documents and a knowledge graph \
of the people, companies, products and events they describe, with dates.

Ground every answer in the knowledge base: search before you answer, and answer only \
from what the tools return. Use hybrid_search or vector_search for passages, \
graph_search, get_entity_relationships and get_entity_timeline for facts, relationships \
and dates, get_document to read a document whole. Several independent searches may be \
asked for at once. If a tool returns an error, correct the call or try another tool.

Answer the question in your first sentence, then give the supporting details. Cite the \
documents you used by title. If the knowledge base does not hold the answer, say so \
plainly; never invent facts, names or dates.\
"""

_SEARCH_HINT = {
    "vector": "Prefer vector_search for passages.",
    "hybrid": "Prefer hybrid_search for passages.",
    "graph": "Prefer graph_search and the entity tools: this question is about facts.",
}


def history_messages(newest_first: Sequence[MessageRow], budget: int) -> list[Message]:
    """The newest earlier turns whose text fits in ``budget`` characters, oldest first."""
    picked: list[MessageRow] = []
    used = 0
    for message in newest_first:
        if not message.content:
            continue  # a failed answer with no text says nothing to the model
        used += len(message.content)
        if used > budget:
            break
        picked.append(message)
    return [
        Message.user(m.content) if m.role == "user" else Message.assistant(m.content)
        for m in reversed(picked)
    ]


class AgentLoop:
    """Answers with ``llm`` and the tools of ``toolbox``, at most ``max_steps`` turns."""

    def __init__(self, llm: LlmClient, toolbox: Toolbox, *, max_steps: int) -> None:
        self._llm = llm
        self._toolbox = toolbox
        self.max_steps = max_steps

    async def run(
        self,
        history: Sequence[Message],
        question: str,
        emit: Emit,
        *,
        model: str | None = None,
        search_type: str = "hybrid",
    ) -> int:
        """Answer ``question``, emitting events as they come; return the steps taken."""
        system = f"{SYSTEM_PROMPT}\n\n{_SEARCH_HINT.get(search_type, '')}".rstrip()
        messages = [Message.system(system), *history, Message.user(question)]
        for step in range(1, self.max_steps + 1):
            last = step == self.max_steps
            completion = await self._turn(messages, emit, model=model, tools=not last)
            if not completion.tool_calls or last:
                return step
            messages.append(completion.to_message())
            outcomes = await self._toolbox.run_all(completion.tool_calls)
            found = tuple(s for outcome in outcomes for s in outcome.sources)
            if found:
                await emit(SourcesFound(found))
            for call, outcome in zip(completion.tool_calls, outcomes, strict=True):
                messages.append(Message.tool(call.id, outcome.content, name=call.name))
        return self.max_steps  # unreachable: the last step returns

    async def _turn(
        self, messages: Sequence[Message], emit: Emit, *, model: str | None, tools: bool
    ) -> Completion:
        specs = TOOL_SPECS if tools else None
        completion: Completion | None = None
        async with self._llm.stream(messages, tools=specs, model=model) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    await emit(AnswerText(event.text))
                elif isinstance(event, ToolCallReady):
                    await emit(tool_use(event.call))
                elif isinstance(event, StreamEnd):
                    completion = event.completion
        assert completion is not None  # the stream ends with StreamEnd or raises
        return completion


def tool_use(call: ToolCall) -> ToolUse:
    """The event of a call; arguments that are not a JSON object are shown as text."""
    args: dict[str, Any]
    try:
        args = call.parsed_arguments()
    except ValueError:
        args = {"arguments": call.arguments}
    return ToolUse(call.name, args, call.id)
