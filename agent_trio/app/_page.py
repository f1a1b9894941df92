"""The web chat page: ``GET /`` and its stylesheet and script, shipped in the package.

Static files (``agent_trio/app/web/``), no build step and nothing from another
address: the page works offline. They are served without the API key (a browser
sends no ``Authorization`` header when it loads a page); the page asks for the key
and sends it with each API call. The policy header lets the page load only its own
script and style, and talk only to this service.
"""

from __future__ import annotations

from importlib.resources import files

import trio
from quart import Blueprint, Response

from agent_trio.app._openapi import document_media

__all__ = ["PAGE_PATHS", "blueprint"]

blueprint = Blueprint("page", __name__)

#: each path of the page, with its file and media type
_FILES = {
    "/": ("index.html", "text/html"),
    "/web/chat.css": ("chat.css", "text/css"),
    "/web/chat.js": ("chat.js", "text/javascript"),
}
#: the page's paths, all open without the API key
PAGE_PATHS = frozenset(_FILES)

_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def _file(path: str) -> Response:
    name, media_type = _FILES[path]
    resource = files("agent_trio.app").joinpath("web", name)
    body = await trio.to_thread.run_sync(resource.read_bytes)
    response = Response(body, content_type=f"{media_type}; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if media_type == "text/html":
        response.headers["Content-Security-Policy"] = _POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/")
@document_media("text/html", "The web chat page (served without the API key).")
async def page() -> Response:
    """The web chat page."""
    return await _file("/")


@blueprint.get("/web/chat.css")
@document_media("text/css", "The chat page's stylesheet.")
async def page_style() -> Response:
    """The chat page's stylesheet."""
    return await _file("/web/chat.css")


@blueprint.get("/web/chat.js")
@document_media("text/javascript", "The chat page's script.")
async def page_script() -> Response:
    """The chat page's script."""
    return await _file("/web/chat.js")
