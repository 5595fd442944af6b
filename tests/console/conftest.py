"""The console in a real browser: Playwright driving Debian's Chromium against the real
system, started once for this package with `stepblend up` and a mock provider, as
tests/e2e does (each test signs up an account of its own). Package-scoped, not
session-scoped: Playwright's sync API keeps an event loop running in the test
thread while it is open, which the async tests after this package must not meet.
Each step's screenshot lands in tests/console/artifacts/; with
STEPBLEND_UPDATE_DOCS_SCREENSHOT=1 the pictures in docs/ are rewritten too."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.support.system import System, running_system

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, never a browser Playwright would download; no network of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS = Path(__file__).resolve().parents[2] / "docs"
PASSWORD = "correct horse battery"
_API_STATUS_LOG = "Failed to load resource: the server responded with a status of"


@pytest.fixture(scope="package")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """`stepblend up` with every provider pointed at one mock provider server."""
    with running_system(Path(tmp_path_factory.mktemp("console"))) as system:
        yield system


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (`python3 dev.py test` does, as root)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, system: System) -> Iterator[BrowserContext]:
    origin = system.base_url.removesuffix("/api/v1")
    context = browser.new_context(
        base_url=origin,
        viewport={"width": 1200, "height": 900},
        locale="en-US",
        timezone_id="UTC",
        color_scheme="light",
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    yield context
    context.close()


@pytest.fixture
def console_errors() -> list[str]:
    """The errors the page logged; a test that caused one on purpose clears it."""
    return []


@pytest.fixture
def page(context: BrowserContext, console_errors: list[str]) -> Iterator[Page]:
    """A tab on the console; the test fails if the page logged an error: a CSP violation,
    a script error. (An API answering 4xx/5xx is logged by Chromium too; the page
    handles those, and the tests check how.)"""
    page = context.new_page()
    problems = console_errors

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(_API_STATUS_LOG):
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    yield page
    page.close()
    assert not problems, problems


def shot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Keep a screenshot of this step as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def docs_shot(target: Page | Locator, name: str) -> None:
    """With STEPBLEND_UPDATE_DOCS_SCREENSHOT=1, rewrite docs/`name`, a picture the README shows."""
    if not os.environ.get("STEPBLEND_UPDATE_DOCS_SCREENSHOT"):
        return
    DOCS.mkdir(exist_ok=True)
    if isinstance(target, Page):
        target.screenshot(path=str(DOCS / name), full_page=True)
    else:
        target.screenshot(path=str(DOCS / name))


def new_email() -> str:
    return f"console-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(page: Page, email: str) -> str:
    """Create an account from the sign-in page; the token the page then shows."""
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    return page.get_by_label("Your StepBlend token (JWT)").input_value()
