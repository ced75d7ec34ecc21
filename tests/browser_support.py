"""Real headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright (CI
installs it with `apt-get install -y chromium`; never `playwright install`).

Without the browser a test is skipped on a developer's machine, and fails where the environment
variable CI is set: a CI that lost its browser must not go green with the browser tests unrun."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.ci import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium(path: Path = CHROMIUM) -> Path:
    if path.exists():
        return path
    skip_or_fail(f"needs Debian's chromium at {path} (apt-get install -y chromium)")


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
