"""Take the README's screenshot of the web page: a real conversation with a running service.

    ./scripts/serve &            # the embedded default, with the sample corpus
    .venv/bin/python -m tests.support.screenshot http://127.0.0.1:8058 docs/web-chat.png

It starts a new chat, asks each question and waits for its whole answer, then saves
the page as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selenium.webdriver.common.by import By

from tests.support.browser import ChatPage, open_browser

QUESTIONS = ("Who acquired Kestrel Labs, and when?", "When did the QX-7 go on sale?")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="the running service, e.g. http://127.0.0.1:8058")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--question", action="append", help="ask this (repeatable)")
    args = parser.parse_args(argv)
    with open_browser() as driver:
        page = ChatPage(driver, args.url.rstrip("/"))
        page.open()
        page.button("New chat").click()
        for number, question in enumerate(args.question or QUESTIONS, start=1):
            page.ask(question)
            page.until(
                lambda n=number: len(page.answers()) == n and page.answer_status() != "streaming"
            )
        driver.find_element(By.ID, "message").click()
        height = int(page.js("return document.documentElement.scrollHeight"))
        driver.set_window_size(1100, min(height + 200, 2400))  # the whole page, header too
        page.js("window.scrollTo(0, 0)")
        page.screenshot(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
