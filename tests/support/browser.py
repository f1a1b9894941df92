"""Headless Chromium for the web page's tests, driven by selenium.

Debian's ``chromium`` and ``chromium-driver`` packages (``scripts/test`` installs
them): selenium is given both paths, so it never looks for or downloads a browser.
Selenium blocks, so a Trio test runs each browser step in a thread
(:func:`in_browser`) while its own task serves the app. Every wait is for a
condition, bounded by :data:`WAIT`: a bound against a hang, not a measure of speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

__all__ = ["CHROMEDRIVER", "CHROMIUM", "WAIT", "ChatPage", "in_browser", "open_browser"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: the bound of every wait for the page
WAIT = 60.0

T = TypeVar("T")


@contextmanager
def open_browser() -> Iterator[WebDriver]:
    """Headless Chromium; fails, saying how to get it, when it is not installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found: ./scripts/test installs Debian's chromium and "
            "chromium-driver (or: apt-get install chromium chromium-driver); "
            "-m 'not browser' leaves these tests out"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1100,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(step: Callable[..., T], *args: Any) -> T:
    """Run a blocking browser step in a thread, so the app keeps serving meanwhile."""
    return await trio.to_thread.run_sync(partial(step, *args))


class ChatPage:
    """The chat page as a person uses it: by the names its controls are labelled with."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    # -- doing -------------------------------------------------------------------------
    def open(self) -> None:
        self.console_errors()  # what an earlier page said is not this page's
        self.driver.get(self.base_url + "/")
        self.until(lambda: self.js("return document.readyState") == "complete")

    def reload(self) -> None:
        self.driver.refresh()
        self.until(lambda: self.js("return document.readyState") == "complete")

    def ask(self, question: str) -> None:
        self.until(lambda: self.button("Send").is_enabled())
        box = self.by_id("message")
        box.clear()
        box.send_keys(question)
        self.button("Send").click()

    def enter_key(self, key: str) -> None:
        field = self.by_id("key")
        field.clear()
        field.send_keys(key)
        self.button("Save key").click()

    # -- seeing ------------------------------------------------------------------------
    def by_id(self, id_: str) -> WebElement:
        return self.driver.find_element(By.ID, id_)

    def button(self, name: str) -> WebElement:
        buttons = [b for b in self.driver.find_elements(By.TAG_NAME, "button") if b.text == name]
        assert len(buttons) == 1, f"one button named {name!r}, found {len(buttons)}"
        return buttons[0]

    def turns(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#log .turn")

    def answers(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#log .turn.assistant")

    def last_answer(self) -> WebElement:
        answers = self.answers()
        assert answers, "no answer on the page"
        return answers[-1]

    def answer_text(self) -> str:
        return str(self.last_answer().find_element(By.CSS_SELECTOR, ".body").text)

    def answer_status(self) -> str | None:
        answers = self.answers()
        return answers[-1].get_attribute("data-status") if answers else None

    def stored(self, name: str) -> str | None:
        value = self.js("return localStorage.getItem(arguments[0])", name)
        return None if value is None else str(value)

    def console_errors(self) -> list[str]:
        """The page's errors since the last call: script errors, refused by the
        Content-Security-Policy; not failed requests (a 401 is one the page expects)."""
        entries = self.driver.get_log("browser")
        return [
            e["message"] for e in entries if e["level"] == "SEVERE" and e["source"] != "network"
        ]

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def until(self, condition: Callable[[], Any], message: str = "") -> Any:
        """Wait (at most :data:`WAIT` seconds) until ``condition()`` is true; return it.
        An element not there yet, or replaced meanwhile, counts as not yet."""
        ignored = (NoSuchElementException, StaleElementReferenceException)
        wait = WebDriverWait(self.driver, WAIT, poll_frequency=0.05, ignored_exceptions=ignored)
        return wait.until(lambda _: condition(), message)

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))
