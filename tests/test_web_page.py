"""The web chat page (``GET /``): served as it is, then used in headless Chromium.

The first tests read the page through the test client. The browser tests serve the
app with Hypercorn on loopback (the LLM is the fake server on loopback, whose slow
answers wait for the test to release them) and use the page as a person would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from agent_trio.app import create_app, running_service
from agent_trio.app._openapi import OPEN_PATHS
from agent_trio.engine import EngineInfo
from agent_trio.service import Service, ServiceHooks
from tests.support.api import make_app, served, started_empty
from tests.support.browser import WAIT, ChatPage, in_browser, open_browser
from tests.support.chat import CORPUS, chat_settings, limiters_idle, poll
from tests.support.fake_llm import Calls, Fail, FakeLlm, Reply, Script, Text
from tests.support.service import fake_embedder

pytestmark = pytest.mark.engine

PAGE_FILES = ("index.html", "chat.css", "chat.js")
SESSION_STORE = "agent-trio.session"
KEY_STORE = "agent-trio.api-key"


# -- the page as served ---------------------------------------------------------------


async def test_the_page_is_served_without_the_api_key(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with started_empty(make_app(engine_info, tmp_path, api_key="s3cret")) as test_app:
        client = test_app.test_client()
        page = await client.get("/")
        assert page.status_code == 200
        assert page.content_type == "text/html; charset=utf-8"
        html = (await page.get_data()).decode()
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert '<script src="/web/chat.js" defer></script>' in html
        assert '<link rel="stylesheet" href="/web/chat.css">' in html
        for path, media_type in (
            ("/web/chat.css", "text/css"),
            ("/web/chat.js", "text/javascript"),
        ):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.content_type == f"{media_type}; charset=utf-8"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert {"/", "/web/chat.css", "/web/chat.js"} <= OPEN_PATHS
        # the API itself still needs the key
        assert (await client.get("/chat/models")).status_code == 401


def test_the_page_is_small_and_loads_nothing_from_elsewhere() -> None:
    web = files("agent_trio.app").joinpath("web")
    texts = {name: web.joinpath(name).read_text(encoding="utf-8") for name in PAGE_FILES}
    assert sum(len(t.encode()) for t in texts.values()) <= 50 * 1024
    for name, text in texts.items():
        # no address of another host: no scheme-qualified or protocol-relative URL
        assert not re.search(r"""["'(]\s*(https?:)?//""", text), name
        assert "@import" not in text, name
    html = texts["index.html"]
    assert '<label for="message">Message</label>' in html
    assert 'role="log"' in html


async def test_the_models_a_chat_may_pick(engine_info: EngineInfo, tmp_path: Path) -> None:
    llm = {"llm_base_url": "http://127.0.0.1:9/v1", "llm_api_key": "sk-test"}
    app = make_app(engine_info, tmp_path, llm_models="small, large", **llm)
    async with started_empty(app) as test_app:
        response = await test_app.test_client().get("/chat/models")
        assert response.status_code == 200
        assert await response.get_json() == {"models": ["small", "large"], "default": "small"}
    async with started_empty(make_app(engine_info, tmp_path)) as test_app:
        response = await test_app.test_client().get("/chat/models")
        assert await response.get_json() == {"models": ["extractive"], "default": "extractive"}


# -- in the browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with open_browser() as driver:
        yield driver


class Served:
    def __init__(self, base_url: str, fake: FakeLlm, service: Service) -> None:
        self.base_url = base_url
        self.fake = fake
        self.service = service

    async def get(self, path: str, **headers: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            return await client.get(path, headers=headers)

    async def session_statuses(self, session_id: str) -> list[tuple[str, str]]:
        messages = await self.service.sessions.messages(session_id)
        return [(m.role, m.status) for m in messages]


@asynccontextmanager
async def serving(
    engine_info: EngineInfo, tmp_path: Path, script: Script | None = None, **settings: Any
) -> AsyncIterator[Served]:
    """The app served on loopback with the sample corpus; the LLM is the fake on loopback
    when a ``script`` is given, else there is none (extractive answers)."""
    fake = FakeLlm([Text("{}")])  # what ingestion's extraction gets, if it asks
    async with trio.open_nursery() as nursery:
        llm_url = await nursery.start(fake.serve) if script is not None else None
        config = chat_settings(tmp_path, llm_url, **settings)
        app = create_app(config, hooks=ServiceHooks(engine=engine_info, embedder=fake_embedder))
        async with served(app) as base_url:
            service = running_service(app)
            assert service is not None
            summary = await service.ingestor.ingest_paths([CORPUS])
            assert not summary.failed, summary.failed
            fake.requests.clear()
            if script is not None:
                fake.script = script
            yield Served(base_url, fake, service)
        nursery.cancel_scope.cancel()


def search_then(answer: Text) -> Script:
    """A turn that offers tools searches first; the turn after gets ``answer``."""

    def reply(number: int, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]
        if body.get("tools") and last["role"] == "user":
            return Calls([("hybrid_search", {"query": "Kestrel Labs acquisition", "limit": 3})])
        return answer

    return reply


ANSWER = (
    "**Corvid Systems** acquired *Kestrel Labs* in 2021.\n\n"
    "- the deal closed in `Q3`\n"
    "- <img src=x onerror=alert(1)> stayed text"
)


@pytest.mark.browser
async def test_an_answer_streams_with_its_sources_and_comes_back_after_a_reload(
    engine_info: EngineInfo, tmp_path: Path, browser: WebDriver
) -> None:
    release = trio.Event()
    script = search_then(Text(ANSWER, pieces=4, pause=release))
    async with serving(engine_info, tmp_path, script, llm_models="fake-model,other-model") as srv:
        page = ChatPage(browser, srv.base_url)
        await in_browser(page.open)

        def accessible() -> None:
            assert page.by_id("message").accessible_name == "Message"
            for name in ("Send", "Stop", "New chat"):
                assert page.button(name).accessible_name == name
            assert page.by_id("log").aria_role == "log"
            page.until(lambda: page.by_id("health-text").text in ("healthy", "degraded"))

        await in_browser(accessible)

        def ask() -> None:
            page.until(lambda: page.by_id("model").is_displayed(), "no model selector")
            options = page.by_id("model").find_elements(By.TAG_NAME, "option")
            assert [o.text for o in options] == ["fake-model", "other-model"]
            options[1].click()
            page.ask("Who acquired Kestrel Labs?")
            # the first words are on the page while the rest is held back by the fake
            page.until(lambda: "Corvid Systems" in page.answer_text(), "no streamed text")
            assert "stayed text" not in page.answer_text()
            assert page.button("Stop").is_enabled()
            assert not page.button("Send").is_enabled()

        await in_browser(ask)
        release.set()

        def answered() -> str:
            page.until(lambda: page.answer_status() == "complete", "the answer did not end")
            answer = page.last_answer()
            assert answer.find_element(By.CSS_SELECTOR, ".body strong").text == "Corvid Systems"
            assert answer.find_element(By.CSS_SELECTOR, ".body em").text == "Kestrel Labs"
            assert answer.find_element(By.CSS_SELECTOR, ".body li code").text == "Q3"
            assert not answer.find_elements(By.CSS_SELECTOR, ".body img")
            assert "<img src=x onerror=alert(1)> stayed text" in page.answer_text()
            assert "other-model" in answer.find_element(By.CSS_SELECTOR, ".who").text
            assert answer.find_element(By.CSS_SELECTOR, ".tools").text == (
                "Tools used: hybrid_search"
            )
            sources = answer.find_elements(By.CSS_SELECTOR, ".sources li")
            assert sources
            link = sources[0].find_element(By.TAG_NAME, "a")
            assert link.text
            assert re.fullmatch(r"/documents/[^/]+", link.get_attribute("pathname") or "")
            assert re.search(r"score \d\.\d{3}", sources[0].text)
            link.click()  # the document, read in the page
            page.until(lambda: page.by_id("document").is_displayed())
            assert page.by_id("document-title").text == link.text
            assert page.by_id("document-content").text
            page.button("Close").click()
            session_id = page.stored(SESSION_STORE)
            assert session_id
            return session_id

        session_id = await in_browser(answered)
        assert srv.fake.requests[0]["model"] == "other-model"
        assert await srv.session_statuses(session_id) == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]

        def restored() -> None:
            page.reload()
            page.until(lambda: len(page.turns()) == 2, "the conversation was not restored")
            assert page.turns()[0].text.endswith("Who acquired Kestrel Labs?")
            assert page.answer_status() == "complete"
            answer = page.last_answer()
            assert answer.find_element(By.CSS_SELECTOR, ".body strong").text == "Corvid Systems"
            assert "hybrid_search" in answer.find_element(By.CSS_SELECTOR, ".tools").text
            page.button("New chat").click()
            assert page.turns() == []
            assert page.stored(SESSION_STORE) is None
            assert page.console_errors() == []

        await in_browser(restored)


@pytest.mark.browser
async def test_stop_interrupts_the_answer_and_leaves_nothing_running(
    engine_info: EngineInfo, tmp_path: Path, browser: WebDriver
) -> None:
    never = trio.Event()
    script = [Text("The answer begins here and would go on and on.", pieces=5, pause=never)]
    async with serving(engine_info, tmp_path, script) as srv:
        page = ChatPage(browser, srv.base_url)

        def stop_mid_answer() -> str:
            page.open()
            page.ask("Tell me everything.")
            page.until(lambda: "The answer" in page.answer_text(), "no streamed text")
            page.button("Stop").click()
            page.until(lambda: page.answer_status() == "interrupted", "not shown interrupted")
            assert "Interrupted" in page.last_answer().find_element(By.CSS_SELECTOR, ".status").text
            assert page.button("Send").is_enabled()
            session_id = page.stored(SESSION_STORE)
            assert session_id
            return session_id

        session_id = await in_browser(stop_mid_answer)
        with trio.fail_after(WAIT):
            await srv.fake.wait_until(lambda fake: bool(fake.closed_while_answering))

        async def nothing_borrowed() -> bool:
            limiters = (await srv.get("/health")).json()["limiters"]
            return all(limiter["borrowed"] == 0 for limiter in limiters.values())

        await poll(nothing_borrowed, within=WAIT)
        assert limiters_idle(srv.service)

        async def stored_interrupted() -> bool:
            return ("assistant", "interrupted") in await srv.session_statuses(session_id)

        await poll(stored_interrupted, within=WAIT)
        answer = (await srv.get(f"/sessions/{session_id}")).json()["messages"][-1]
        assert answer["status"] == "interrupted"
        assert answer["content"].startswith("The answer")

        def shown_interrupted_after_reload() -> None:
            page.reload()
            page.until(lambda: len(page.turns()) == 2, "the conversation was not restored")
            assert page.answer_status() == "interrupted"
            assert page.answer_text().startswith("The answer")
            assert "Interrupted" in page.last_answer().text
            assert page.console_errors() == []

        await in_browser(shown_interrupted_after_reload)


@pytest.mark.browser
async def test_an_error_frame_is_shown_as_an_error(
    engine_info: EngineInfo, tmp_path: Path, browser: WebDriver
) -> None:
    async with serving(engine_info, tmp_path, [Fail(500)]) as srv:
        page = ChatPage(browser, srv.base_url)

        def failed() -> None:
            page.open()
            page.ask("Is anyone there?")
            page.until(lambda: page.answer_status() == "failed", "no error shown")
            status = page.last_answer().find_element(By.CSS_SELECTOR, ".status")
            assert status.get_attribute("role") == "alert"
            assert status.text == (
                "Error: the llm service is unavailable; try again shortly (upstream_unavailable)"
            )
            assert page.button("Send").is_enabled()
            assert page.console_errors() == []

        await in_browser(failed)
        assert limiters_idle(srv.service)


@pytest.mark.browser
async def test_the_page_asks_for_the_api_key_and_again_when_it_is_refused(
    engine_info: EngineInfo, tmp_path: Path, browser: WebDriver
) -> None:
    async with serving(engine_info, tmp_path, api_key="s3cret") as srv:
        page = ChatPage(browser, srv.base_url)

        def with_the_key() -> None:
            page.open()
            page.until(lambda: page.by_id("key-form").is_displayed(), "no key prompt")
            assert page.by_id("key-reason").text == "This service needs an API key."
            assert page.by_id("key").accessible_name == "API key"
            page.enter_key("wrong")
            page.until(lambda: "refused (401" in page.by_id("key-reason").text)
            assert page.by_id("key-form").is_displayed()
            page.enter_key("s3cret")
            page.until(lambda: not page.by_id("key-form").is_displayed())
            assert page.stored(KEY_STORE) == "s3cret"
            assert not page.by_id("model").is_displayed()  # extractive: nothing to choose
            page.ask("Who acquired Kestrel Labs?")
            page.until(lambda: page.answer_status() == "complete", "no answer")
            assert "Corvid" in page.answer_text()
            assert page.last_answer().find_elements(By.CSS_SELECTOR, ".sources li")
            page.reload()  # the key is remembered: no prompt, the conversation is back
            page.until(lambda: len(page.turns()) == 2, "the conversation was not restored")
            assert not page.by_id("key-form").is_displayed()
            assert page.console_errors() == []

        await in_browser(with_the_key)


# Markdown: the renderer, run in the page against what a model or a document may send.
MARKDOWN = [
    ("plain & <b>bold</b>", "<p>plain &amp; &lt;b&gt;bold&lt;/b&gt;</p>"),
    (
        "**strong** and *em* and _em_",
        "<p><strong>strong</strong> and <em>em</em> and <em>em</em></p>",
    ),
    ("snake_case_name stays", "<p>snake_case_name stays</p>"),
    ("a `<code>` *x*", "<p>a <code>&lt;code&gt;</code> <em>x</em></p>"),
    ("line one\nline two\n\nnext", "<p>line one line two</p><p>next</p>"),
    ("hard  \nbreak", "<p>hard<br>break</p>"),
    ("- item\n  goes on", "<ul><li>item goes on</li></ul>"),
    ("- one\n- **two**", "<ul><li>one</li><li><strong>two</strong></li></ul>"),
    ("3. three\n4. four", '<ol start="3"><li>three</li><li>four</li></ol>'),
    ("Facts:\n- a fact", "<p>Facts:</p><ul><li>a fact</li></ul>"),
    (
        "```\n<script>alert(1)</script>\n**no**\n```",
        "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;\n**no**</code></pre>",
    ),
    ("```py\nstill streaming", "<pre><code>still streaming</code></pre>"),
    ("## Title", "<h4>Title</h4>"),
    ("> quoted", "<blockquote><p>quoted</p></blockquote>"),
    (
        "[site](https://example.org/a_b?x=1&y=2)",
        '<p><a href="https://example.org/a_b?x=1&amp;y=2" target="_blank" '
        'rel="noopener noreferrer">site</a></p>',
    ),
    ("[bad](javascript:alert(1))", "<p>[bad](javascript:alert(1))</p>"),
    (  # a quote cannot end the address: it stays escaped inside it
        '[q](https://x.org/"onmouseover="a)',
        '<p><a href="https://x.org/&quot;onmouseover=&quot;a" target="_blank" '
        'rel="noopener noreferrer">q</a></p>',
    ),
    ("<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>"),
]


@pytest.mark.browser
async def test_markdown_is_rendered_safely(
    engine_info: EngineInfo, tmp_path: Path, browser: WebDriver
) -> None:
    async with serving(engine_info, tmp_path) as srv:
        page = ChatPage(browser, srv.base_url)

        def rendered() -> list[str]:
            page.open()
            sources = [source for source, _ in MARKDOWN]
            return list(
                page.js("return arguments[0].map(window.agentTrio.renderMarkdown)", sources)
            )

        html = await in_browser(rendered)
    assert html == [expected for _, expected in MARKDOWN]
