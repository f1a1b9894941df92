"""One chat turn, from the user's message to the stored answer.

:meth:`Chat.run` writes the user's message (and starts the session) before
anything else (cancelled while that write is on the engine, which finishes a
statement it was sent, it stores an empty ``interrupted`` answer if the message
is there), answers — with the LLM loop, or extractively when there is no
LLM — under the whole-chat deadline, and then stores the assistant's message with
what was produced: ``complete``; ``failed`` when the run failed or ran out of
time; ``interrupted`` when it was cancelled (the client left, the service is
stopping). That last write happens whatever cancelled the run: it is shielded,
under a deadline of its own (short for an interrupted answer; longer for a finished
one, which may queue for a graph slot behind many answers that ended at once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from agent_trio._errors import AgentTrioError, GraphUnavailable
from agent_trio.agent._events import ChatEvent, Emit, Transcript
from agent_trio.agent._extractive import EXTRACTIVE_MODEL, ExtractiveAnswerer
from agent_trio.agent._loop import AgentLoop, history_messages
from agent_trio.agent._tools import Toolbox
from agent_trio.graph import KnowledgeStore, MessageStatus, SessionStore, Turn, new_id
from agent_trio.search import Searcher
from agent_trio.upstream import LlmClient

__all__ = ["Chat", "ChatRequest", "ChatResult"]

log = logging.getLogger("agent_trio.agent")

#: how long storing an interrupted answer may take after the cancellation
FINAL_WRITE_DEADLINE = 5.0
#: how long storing a finished (complete or failed) answer may take: the wait for a
#: graph slot counts, and many answers can end at once
STORE_DEADLINE = 30.0
#: characters of earlier messages the model gets (the newest turns)
HISTORY_BUDGET = 24_000
#: earlier messages read for that
HISTORY_MESSAGES = 100
#: one tool call's deadline
TOOL_DEADLINE = 30.0


@dataclass(frozen=True, slots=True)
class ChatRequest:
    message: str
    session_id: str
    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    search_type: str = "hybrid"
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    session_id: str
    message_id: str
    model: str
    steps: int


class Chat:
    """Runs chat turns; ``llm`` is ``None`` for extractive answers."""

    def __init__(
        self,
        *,
        searcher: Searcher,
        knowledge: KnowledgeStore,
        sessions: SessionStore,
        llm: LlmClient | None,
        max_steps: int,
        deadline: float,
        tool_deadline: float = TOOL_DEADLINE,
    ) -> None:
        self._sessions = sessions
        self._llm = llm
        self._deadline = deadline
        self._extractive = ExtractiveAnswerer(searcher)
        self._loop = (
            AgentLoop(
                llm, Toolbox(searcher, knowledge, deadline=tool_deadline), max_steps=max_steps
            )
            if llm is not None
            else None
        )

    def model_for(self, request: ChatRequest) -> str:
        """The model that answers ``request``."""
        if self._llm is None:
            return EXTRACTIVE_MODEL
        return request.model or self._llm.model

    async def run(self, request: ChatRequest, transcript: Transcript, emit: Emit) -> ChatResult:
        """Answer ``request``: events go to ``emit`` and into ``transcript``.

        Raises :class:`trio.TooSlowError` after the whole-chat deadline, and the
        outage that stopped it (graph, upstream) otherwise; in every case the
        assistant's message is stored with what was produced.
        """
        asked = new_id()
        try:
            turn = await self._sessions.open_turn(
                request.session_id,
                request.message,
                user_id=request.user_id,
                metadata=request.metadata,
                history=HISTORY_MESSAGES,
                message_id=asked,
            )
        except BaseException as exc:
            if _is_cancellation(exc):  # the question may be stored all the same
                await self._store_answer(
                    request.session_id, new_id(), "interrupted", transcript, reply_to=asked
                )
            raise

        async def record(event: ChatEvent) -> None:
            transcript.record(event)
            await emit(event)

        message_id = new_id()
        status: MessageStatus = "failed"
        try:
            steps = await self._answer_in_time(request, turn, record)
            status = "complete"
        except BaseException as exc:
            if _is_cancellation(exc):
                status = "interrupted"
            raise
        finally:
            await self._store_answer(request.session_id, message_id, status, transcript)
        return ChatResult(request.session_id, message_id, self.model_for(request), steps)

    async def _answer_in_time(self, request: ChatRequest, turn: Turn, emit: Emit) -> int:
        with trio.move_on_after(self._deadline):
            return await self._answer(request, turn, emit)
        raise trio.TooSlowError(f"the chat did not finish within {self._deadline:g} s")

    async def _answer(self, request: ChatRequest, turn: Turn, emit: Emit) -> int:
        if self._loop is None:
            await self._extractive.run(request.message, emit, search_type=request.search_type)
            return 1
        history = history_messages(turn.history, HISTORY_BUDGET)
        return await self._loop.run(
            history,
            request.message,
            emit,
            model=self.model_for(request),
            search_type=request.search_type,
        )

    async def _store_answer(
        self,
        session_id: str,
        message_id: str,
        status: MessageStatus,
        transcript: Transcript,
        *,
        reply_to: str | None = None,
    ) -> None:
        allowed = FINAL_WRITE_DEADLINE if status == "interrupted" else STORE_DEADLINE
        deadline = trio.current_time() + allowed
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            try:
                await self._sessions.add_message(
                    session_id,
                    "assistant",
                    transcript.text,
                    status=status,
                    tool_calls=[t.to_api() for t in transcript.tools],
                    message_id=message_id,
                    reply_to=reply_to,
                )
            except AgentTrioError as exc:
                log.error("could not store the answer %s (%s): %s", message_id, status, exc)
                if status == "complete":
                    raise  # no answer may claim an id that was never stored
        if scope.cancelled_caught:
            log.error("storing the answer %s (%s) took too long; gave up", message_id, status)
            if status == "complete":
                raise GraphUnavailable("the graph did not store the answer in time")


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False
