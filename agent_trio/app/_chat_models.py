"""Request bodies of the chat routes (``/chat``, ``/chat/stream``), validated strictly.

Types are strict (``"10"`` is not a number, ``1`` is not a string); an optional
field sent as ``null`` counts as absent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = ["SESSION_ID_PATTERN", "ChatIn"]

#: what a session id may look like: a UUID, a slug, a client's own token
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class ChatIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    message: Annotated[str, StringConstraints(min_length=1, max_length=32_000)]
    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)] | None = None
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    metadata: dict[str, Any] | None = None
    search_type: Literal["vector", "graph", "hybrid"] | None = None
    model_choice: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None
    )

    @field_validator("message")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message must hold some text")
        return value
