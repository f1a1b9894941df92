"""Chat routes: ``POST /chat``, ``POST /chat/stream`` (server-sent events), ``GET /sessions/{id}``,
and ``GET /chat/models`` (what ``model_choice`` may be).

A chat takes a slot of the ``chat`` limiter (CHAT_MAX_CONCURRENCY) for as long as
it runs; when none frees up within :data:`SLOT_WAIT` seconds the answer is 503
with ``Retry-After``. A stream holds its slot until its body ends: the body owns a
nursery (opened when the server starts sending it, closed when it stops) in which
the chat runs; the reader of its frames adds a ``: ping`` comment every
:data:`PING_INTERVAL` seconds. When the client leaves, the server cancels the body; that cancels the
chat, its tools and its upstream request, and the slot comes back. When the server
begins to stop (``_streams``), the body's chat is cancelled (the answer is stored
``interrupted``) and the stream ends with an ``error`` frame, code ``shutting_down``.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import trio
from quart import Blueprint, Response
from quart.wrappers.response import ResponseBody
from quart_schema import validate_request, validate_response

from agent_trio._errors import AgentTrioError
from agent_trio._logs import note_session
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
from agent_trio.app._context import current_metrics, current_service, current_streams
from agent_trio.app._errors import ApiError, dependency_problem
from agent_trio.app._metrics import Metrics
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
PING = b": ping\n\n"
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
    session_id = data.session_id or new_id()
    note_session(session_id)
    return ChatRequest(
        message=data.message,
        session_id=session_id,
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
    metrics = current_metrics()
    slot = _Slot(service, metrics, "chat")
    await slot.take()
    transcript = Transcript()
    try:
        with _outcome_counted(metrics):
            result = await _chat_of(service).run(request, transcript, _ignore)
    except BaseExceptionGroup as group:
        raise _representative(group) from group
    finally:
        slot.release()
    return _answer(result, request, transcript)


class _Slot:
    """One chat's slot of the ``chat`` limiter; the slot object is the borrower.

    While it holds its token, the chat is registered with the service as an
    operation in flight (``kind``: ``chat`` or ``stream``), which accounts for it.
    """

    def __init__(self, service: Service, metrics: Metrics, kind: str) -> None:
        self._limiter = service.limiters["chat"]
        self._waits = service.waits
        self._in_flight = service.in_flight
        self._metrics = metrics
        self._kind = kind
        self._held = False

    async def take(self) -> None:
        """Take the slot, or 503 (a ``rejected`` chat) when none frees up within
        :data:`SLOT_WAIT`."""
        waiting_since = trio.current_time()
        with trio.move_on_after(SLOT_WAIT):
            await self._limiter.acquire_on_behalf_of(self)
            self._held = True
            self._waits.add(self._limiter, trio.current_time() - waiting_since)
            self._in_flight.begin(self._kind)
            return
        self._metrics.chats.labels("rejected").inc()
        raise _overloaded()

    def release(self) -> bool:
        """Give the slot back, if it is still held (idempotent); True if it was."""
        if not self._held:
            return False
        self._held = False
        self._limiter.release_on_behalf_of(self)
        self._in_flight.end(self._kind)
        return True

    def release_unsent(self) -> None:
        """For a stream whose body was never sent (the client left before): its chat
        never ran, and counts as ``interrupted``."""
        if self.release():
            self._metrics.chats.labels("interrupted").inc()


@contextmanager
def _outcome_counted(metrics: Metrics) -> Iterator[None]:
    """Count the chat run in the block by how it ends."""
    outcome = "failed"
    try:
        yield
        outcome = "complete"
    except BaseException as exc:
        if _is_cancellation(exc):
            outcome = "interrupted"
        raise
    finally:
        metrics.chats.labels(outcome).inc()


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return isinstance(exc, trio.Cancelled)


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
    metrics = current_metrics()
    slot = _Slot(service, metrics, "stream")
    body = _EventStream(_chat_of(service), request, slot, metrics, current_streams())
    await slot.take()
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
    note_session(session_id)
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
        slot: _Slot,
        metrics: Metrics,
        streams: OpenStreams,
    ) -> None:
        self._chat = chat
        self._request = request
        self._slot = slot
        self._metrics = metrics
        self._streams = streams
        #: the chat's scope; the open streams cancel it when the server begins to stop
        self._stopping = trio.CancelScope()
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None
        self._receive: trio.MemoryReceiveChannel[bytes] | None = None
        #: if the server drops the response before it sends the body (the client
        #: left in between), the slot comes back when the body goes
        weakref.finalize(self, slot.release_unsent)

    async def __aenter__(self) -> _EventStream:
        send, self._receive = trio.open_memory_channel[bytes](_FRAME_BUFFER)
        self._nursery_manager = trio.open_nursery()
        try:
            self._nursery = await self._nursery_manager.__aenter__()
        except BaseException:
            self._slot.release_unsent()
            raise
        self._metrics.streams_open.inc()
        self._nursery.start_soon(self._produce, send)
        return self

    def __aiter__(self) -> Frames:
        assert self._receive is not None, "enter the body before reading it"
        return Frames(self._receive)

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
            self._metrics.streams_open.dec()
            self._slot.release()

    async def _produce(self, send: trio.MemorySendChannel[bytes]) -> None:
        with self._streams.opened(self._stopping):
            async with send:
                await self._run(send.send)

    async def _run(self, send: Send) -> None:
        request = self._request
        await send(frame("session", {"session_id": request.session_id}))
        await send(frame("model", {"model_used": self._chat.model_for(request)}))
        transcript = Transcript()

        async def emit(event: ChatEvent) -> None:
            await send(_event_frame(event))

        result: ChatResult | None = None
        try:
            with self._stopping, _outcome_counted(self._metrics):
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


class Frames:
    """The frames of a stream as the server sends them, with a ``: ping`` comment
    every :data:`PING_INTERVAL` seconds from the first read (the reader keeps the
    time: no task of its own per stream)."""

    def __init__(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        self._receive = receive
        self._next_ping: float | None = None

    def __aiter__(self) -> Frames:
        return self

    async def __anext__(self) -> bytes:
        if self._next_ping is None:
            self._next_ping = trio.current_time() + PING_INTERVAL
        with trio.move_on_at(self._next_ping):
            try:
                return await self._receive.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
        self._next_ping += PING_INTERVAL
        return PING


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
