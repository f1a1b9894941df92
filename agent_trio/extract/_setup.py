"""Choosing the extractor from the settings, and the LLM adapter it needs."""

from __future__ import annotations

from agent_trio._settings import Settings
from agent_trio.extract._extract import Extractor
from agent_trio.extract._llm_extract import Complete, LlmExtractor
from agent_trio.extract._rules import RuleExtractor
from agent_trio.extract._workers import ExtractionWorkers
from agent_trio.upstream import LlmClient, Message

__all__ = ["complete_with", "extractor_for"]


def extractor_for(
    settings: Settings, llm: LlmClient | None, *, workers: ExtractionWorkers | None = None
) -> Extractor:
    """Rules when ``LLM_PROVIDER=none`` (or no client is open), else the LLM. The rules
    extract in ``workers``' processes once they are up (``RuleExtractor``)."""
    if settings.llm_provider == "none" or llm is None:
        return RuleExtractor(workers)
    return LlmExtractor(complete_with(llm))


def complete_with(llm: LlmClient) -> Complete:
    """A :data:`Complete` over ``llm``: role/content dicts in, the answer's text out.

    Temperature 0: extraction wants the most likely reading, the same on every run.
    No ``response_format`` is asked for, as not every OpenAI-compatible server
    accepts one; the extractor validates the answer and asks again itself.
    """

    async def complete(messages: list[dict[str, str]]) -> str:
        completion = await llm.complete([_message(m) for m in messages], temperature=0.0)
        return completion.content or ""

    return complete


def _message(wire: dict[str, str]) -> Message:
    role, content = wire["role"], wire["content"]
    if role == "system":
        return Message.system(content)
    if role == "assistant":
        return Message.assistant(content)
    if role == "user":
        return Message.user(content)
    raise ValueError(f"an extraction prompt has a message with role {role!r}")
