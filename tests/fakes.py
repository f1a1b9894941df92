"""Stand-ins for third-party HTTP APIs that cannot be reached here (embeddings, LLM).

They speak the real wire protocol through ``httpx.MockTransport``, so the real
clients are exercised end to end.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import httpx

__all__ = ["hashed_vector", "openai_embeddings_transport"]

_WORD = re.compile(r"[a-z0-9]+")


def hashed_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words point the same way."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def openai_embeddings_transport(dimensions: int) -> httpx.MockTransport:
    """An OpenAI-compatible ``/embeddings`` endpoint that returns hashed vectors."""

    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/embeddings"):
            return httpx.Response(404, json={"error": {"message": "not found"}})
        body = json.loads(request.content)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(t, dimensions)}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": sum(len(t) // 4 for t in texts), "total_tokens": 0}
        return httpx.Response(
            200, json={"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    return httpx.MockTransport(handle)
