"""Request bodies of the chat routes (``/chat``, ``/chat/stream``).

They follow the rules of every body (:class:`~agent_trio.app._models.Body`):
strict types, ``null`` counts as absent, unknown fields are refused, no NUL in text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from agent_trio.app._models import Body, NonBlankText, Text
from agent_trio.app._openapi import CHOICES

__all__ = ["SESSION_ID_PATTERN", "ChatIn"]

#: what a session id may look like: a UUID, a slug, a client's own token
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class ChatIn(Body):
    """A user's message; ``model_choice`` is one of LLM_MODELS (the first by default)."""

    message: Annotated[NonBlankText, Field(max_length=32_000)]
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    user_id: Annotated[Text, Field(min_length=1, max_length=256)] | None = None
    metadata: dict[str, Any] | None = None
    search_type: Literal["vector", "graph", "hybrid"] | None = None
    model_choice: (
        Annotated[
            Text, Field(min_length=1, max_length=200, json_schema_extra={CHOICES: "LLM_MODELS"})
        ]
        | None
    ) = None
