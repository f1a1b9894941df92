"""The terminal chat client: ``python -m agent_trio chat [--url URL]``.

A synchronous httpx client of ``POST /chat/stream``: text as it streams, the
session kept across turns, tools and sources after each answer. Ctrl-C cancels
the answer in progress (the request is closed, so the server cancels the run),
Ctrl-D quits. Nothing here imports the service.
"""

from agent_trio.client._sse import iter_frames
from agent_trio.client._terminal import API_KEY_VARIABLES, api_key_from_env, run_chat

__all__ = ["API_KEY_VARIABLES", "api_key_from_env", "iter_frames", "run_chat"]
