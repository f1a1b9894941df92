"""Chat routes: ``POST /chat``, ``POST /chat/stream`` (server-sent events), ``GET /sessions/{id}``,
and ``GET /chat/models`` (what ``model_choice`` may be).

A chat takes a slot of the ``chat`` limiter (CHAT_MAX_CONCURRENCY) for as long as
it runs; when none frees up within :data:`SLOT_WAIT` seconds the answer is 503
with ``Retry-After``. A stream holds its slot until its body ends: the body owns a
nursery (opened when the server starts sending it, closed when it stops) in which
the chat runs and a ``: ping`` comment goes out every :data:`PING_INTERVAL`
seconds. When the client leaves, the server cancels the body; that cancels the
chat, its tools and its upstream request, and the slot comes back. When the server
begins to stop (``_streams``), the body cancels its chat (the answer is stored
``interrupted``) and ends with an ``error`` frame, code ``shutting_down``.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import trio
from quart import Blueprint, Response
from quart.wrappers.response import ResponseBody
from quart_schema import validate_request, validate_response

from agent_trio._errors import AgentTrioError
from agent_trio.agent import (
    AnswerText,
    Chat,
    ChatEvent,
    ChatRequest,
    ChatResult,
    SourcesFound,
    ToolUse,
    Transcript,
)
from agent_trio.app._chat_models import ChatIn
from agent_trio.app._context import current_service, current_streams
from agent_trio.app._errors import ApiError, dependency_problem
from agent_trio.app._openapi import document_errors, document_media
from agent_trio.app._responses import ChatOut, ModelsOut, SessionOut
from agent_trio.app._streams import OpenStreams
from agent_trio.graph import new_id
from agent_trio.service import Service

__all__ = ["blueprint"]

log = logging.getLogger("agent_trio.app")

blueprint = Blueprint("chat", __name__)

#: how long a chat waits for a slot before it is refused
SLOT_WAIT = 2.0
#: seconds between keep-alive comments on a stream
PING_INTERVAL = 15.0
#: frames buffered between a chat and the client reading its stream
_FRAME_BUFFER = 64

Send = Callable[[bytes], Awaitable[None]]

#: the event types of a chat stream, in the order they may come
EVENT_TYPES = ("session", "model", "text", "tool_call", "sources", "tools", "end", "error")
#: one event of a chat stream, as OpenAPI documents it
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": list(EVENT_TYPES)},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


def _chat_of(service: Service) -> Chat:
    settings = service.settings
    return Chat(
        searcher=service.searcher,
        knowledge=service.knowledge,
        sessions=service.sessions,
        llm=service.llm,
        max_steps=settings.agent_max_steps,
        deadline=settings.chat_timeout_seconds,
    )


def _request_of(data: ChatIn, service: Service) -> ChatRequest:
    models = service.settings.llm_model_list
    if data.model_choice is not None and data.model_choice not in models:
        raise ApiError(
            422,
            "validation_error",
            f"model_choice: must be one of {', '.join(models)} (LLM_MODELS)",
            field="model_choice",
        )
    return ChatRequest(
        message=data.message,
        session_id=data.session_id or new_id(),
        user_id=data.user_id,
        metadata=data.metadata or {},
        search_type=data.search_type or "hybrid",
        model=data.model_choice or (models[0] if models and service.llm is not None else None),
    )


def _overloaded() -> ApiError:
    return ApiError(
        503,
        "overloaded",
        "too many chats are running (CHAT_MAX_CONCURRENCY); try again shortly",
        retry_after=1,
    )


@blueprint.post("/chat")
@validate_request(ChatIn)
@validate_response(ChatOut)
@document_errors(504)
async def chat(data: ChatIn) -> dict[str, Any]:
    """Answer one message of a session, with the sources it quotes."""
    service = current_service()
    request = _request_of(data, service)
    limiter = service.limiters["chat"]
    await _take_slot(limiter, trio.lowlevel.current_task())
    transcript = Transcript()
    try:
        result = await _chat_of(service).run(request, transcript, _ignore)
    except BaseExceptionGroup as group:
        raise _representative(group) from group
    finally:
        limiter.release()
    return _answer(result, request, transcript)


async def _take_slot(limiter: trio.CapacityLimiter, owner: object) -> None:
    """A chat slot for ``owner``, or 503 when none frees up within :data:`SLOT_WAIT`."""
    with trio.move_on_after(SLOT_WAIT):
        await limiter.acquire_on_behalf_of(owner)
        return
    raise _overloaded()


def _release_slot(limiter: trio.CapacityLimiter, owner: object) -> None:
    """Give ``owner``'s slot back, if it still holds one (idempotent)."""
    if owner in limiter.statistics().borrowers:
        limiter.release_on_behalf_of(owner)


async def _ignore(event: ChatEvent) -> None:
    return None


def _answer(result: ChatResult, request: ChatRequest, transcript: Transcript) -> dict[str, Any]:
    return {
        "message": transcript.text,
        "session_id": result.session_id,
        "message_id": result.message_id,
        "sources": [s.to_api() for s in transcript.sources],
        "tools_used": [t.to_api() for t in transcript.tools],
        "metadata": {
            "search_type": request.search_type,
            "model": result.model,
            "steps": result.steps,
        },
    }


@blueprint.post("/chat/stream")
@validate_request(ChatIn)
@document_media(
    "text/event-stream",
    "Server-sent events, each `event: <type>` with `data: <json>` that repeats `type`: "
    "`session`, `model`, any of `text`, `tool_call`, `sources`, then `tools` if tools ran, "
    "then `end` or `error`; a `: ping` comment every 15 s.",
    schema=EVENT_SCHEMA,
)
async def chat_stream(data: ChatIn) -> Response:
    """Answer one message of a session as a stream of events."""
    service = current_service()
    request = _request_of(data, service)
    limiter = service.limiters["chat"]
    body = _EventStream(_chat_of(service), request, limiter, current_streams())
    await _take_slot(limiter, body.slot)
    response = Response(body, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None  # a stream lasts as long as its chat
    return response


@blueprint.get("/chat/models")
@validate_response(ModelsOut)
async def chat_models() -> dict[str, Any]:
    """The models a chat may pick with ``model_choice`` (LLM_MODELS); the first is the default."""
    models = current_service().settings.llm_model_list
    return {"models": models, "default": models[0] if models else None}


@blueprint.get("/sessions/<string:session_id>")
@validate_response(SessionOut)
@document_errors(404)
async def get_session(session_id: str) -> dict[str, Any]:
    """A session with its messages, oldest first."""
    sessions = current_service().sessions
    session = await sessions.get(session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session with id {session_id!r}")
    messages = await sessions.messages(session_id)
    return {
        "id": session.id,
        "user_id": session.user_id,
        "metadata": dict(session.metadata),
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "messages": [m.to_api() for m in messages],
    }


# -- server-sent events -------------------------------------------------------------


def frame(kind: str, data: dict[str, Any]) -> bytes:
    """One event: ``event: <kind>`` and its JSON, which repeats the kind as ``type``."""
    payload = json.dumps({"type": kind, **data}, ensure_ascii=False)
    return f"event: {kind}\ndata: {payload}\n\n".encode()


def _event_frame(event: ChatEvent) -> bytes:
    if isinstance(event, AnswerText):
        return frame("text", {"content": event.content})
    if isinstance(event, ToolUse):
        return frame("tool_call", event.to_api())
    assert isinstance(event, SourcesFound)
    return frame("sources", {"sources": event.to_api()})


class _EventStream(ResponseBody):
    """The body of a chat stream; owns the chat's slot and, while sent, its nursery."""

    def __init__(
        self,
        chat: Chat,
        request: ChatRequest,
        limiter: trio.CapacityLimiter,
        streams: OpenStreams,
    ) -> None:
        self._chat = chat
        self._request = request
        self._limiter = limiter
        self._streams = streams
        #: the chat's scope; cancelled when the server begins to stop
        self._stopping = trio.CancelScope()
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None
        self._receive: trio.MemoryReceiveChannel[bytes] | None = None
        #: who holds the chat slot; if the server drops the response before it sends
        #: the body (the client left in between), the slot comes back when it goes
        self.slot = object()
        weakref.finalize(self, _release_slot, limiter, self.slot)

    async def __aenter__(self) -> _EventStream:
        send, self._receive = trio.open_memory_channel[bytes](_FRAME_BUFFER)
        self._nursery_manager = trio.open_nursery()
        try:
            self._nursery = await self._nursery_manager.__aenter__()
        except BaseException:
            self._release()
            raise
        self._nursery.start_soon(self._produce, send)
        return self

    def __aiter__(self) -> trio.MemoryReceiveChannel[bytes]:
        assert self._receive is not None, "enter the body before reading it"
        return self._receive

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()  # the client is gone, or the stream ended
        try:
            await self._nursery_manager.__aexit__(exc_type, exc, tb)
        finally:
            self._release()

    def _release(self) -> None:
        _release_slot(self._limiter, self.slot)

    async def _produce(self, send: trio.MemorySendChannel[bytes]) -> None:
        with self._streams.opened():
            async with send, trio.open_nursery() as nursery:
                nursery.start_soon(_ping, send.clone())
                nursery.start_soon(self._stop_when_closing)
                await self._run(send.send)
                nursery.cancel_scope.cancel()

    async def _stop_when_closing(self) -> None:
        await self._streams.wait_closing()
        self._stopping.cancel()

    async def _run(self, send: Send) -> None:
        request = self._request
        await send(frame("session", {"session_id": request.session_id}))
        await send(frame("model", {"model_used": self._chat.model_for(request)}))
        transcript = Transcript()

        async def emit(event: ChatEvent) -> None:
            await send(_event_frame(event))

        result: ChatResult | None = None
        try:
            with self._stopping:
                result = await self._chat.run(request, transcript, emit)
        except Exception as exc:
            code, message = _error_of(exc)
            await _send_tools(send, transcript)
            await _send_error(send, code, message)
            return
        await _send_tools(send, transcript)
        if result is None:  # the server is stopping: the chat was cancelled
            await _send_error(send, *SHUTTING_DOWN)
            return
        await send(frame("end", {"session_id": result.session_id, "message_id": result.message_id}))


async def _send_tools(send: Send, transcript: Transcript) -> None:
    if transcript.tools:
        await send(frame("tools", {"tools": [t.to_api() for t in transcript.tools]}))


async def _send_error(send: Send, code: str, message: str) -> None:
    await send(frame("error", {"code": code, "message": message, "content": message}))


async def _ping(send: trio.MemorySendChannel[bytes]) -> None:
    async with send:
        while True:
            await trio.sleep(PING_INTERVAL)
            await send.send(b": ping\n\n")


# -- errors ---------------------------------------------------------------------------

#: the ``error`` frame of a stream that the server's stop ended
SHUTTING_DOWN = ("shutting_down", "the service is shutting down; try again shortly")


def _representative(group: BaseExceptionGroup[Any]) -> BaseException:
    """The error that stands for a group: the first of ours, else the first leaf."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [e for e in leaves if isinstance(e, AgentTrioError | trio.TooSlowError)]
    return (ours or leaves)[0]


def _error_of(exc: BaseException) -> tuple[str, str]:
    """The ``error`` frame's code and message, as the JSON errors would give them."""
    if isinstance(exc, BaseExceptionGroup):
        exc = _representative(exc)
    if isinstance(exc, trio.TooSlowError):
        return "deadline_exceeded", "the chat did not finish in time (CHAT_TIMEOUT_SECONDS)"
    if isinstance(exc, AgentTrioError):
        return dependency_problem(exc)
    log.error("a chat stream failed", exc_info=exc)
    return "internal_error", "an unexpected error occurred"
