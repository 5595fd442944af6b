"""API keys and the account budget in the console (SPEC.md §7), driven in Chromium against
the real system: a key is made from the form and shown once, works from Python, is
listed with its requests and spend and named in the usage table, and is revoked after a
confirmation; the budget is set and removed; a key's name is only ever text.

With STEPBLEND_UPDATE_DOCS_SCREENSHOT=1 this rewrites docs/console-keys.png (the API keys
section) and docs/console.png (the whole page, keys and budget in use).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
from playwright.sync_api import Dialog, Locator, Page, Route, expect

from tests.console.conftest import docs_shot, new_email, shot, sign_up
from tests.support.system import System

MODEL = "openai:gpt-4o-mini"
XSS_NAME = "<img src=x onerror=alert(1)>"


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _connect_openai(system: System, token: str) -> None:
    response = httpx.put(
        f"{system.base_url}/account/keys/openai", headers=_auth(token), json={"api_key": "sk-keys-1234"}
    )
    assert response.status_code == 200, response.text


def _chat(system: System, credential: str, text: str = "hi") -> httpx.Response:
    return httpx.post(
        f"{system.base_url}/chat/completions",
        headers=_auth(credential),
        json={"model": MODEL, "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def _listed(system: System, token: str, name: str) -> dict[str, Any]:
    keys = httpx.get(f"{system.base_url}/account/api-keys", headers=_auth(token)).json()["data"]
    [found] = [k for k in keys if k["name"] == name]
    return dict(found)


def _row(page: Page, name: str) -> Locator:
    return page.locator("#apikey-rows tr").filter(has=page.locator("td.apikey-name-cell", has_text=name))


def _column(row: Locator, index: int) -> Locator:
    """0 name and key hint, 1 created, 2 last used, 3 requests, 4 spend, 5 limits, 6 status, 7 actions."""
    return row.locator("td").nth(index)


def _day(seconds: int) -> str:
    """A date as the page shows it (the browser's locale is en-US, its zone UTC)."""
    when = datetime.fromtimestamp(seconds, UTC)
    return f"{when:%b} {when.day}, {when.year}"


def _create(page: Page, name: str, **fields: str) -> str:
    """Fill the create form (fields by label) and submit; the key the page then shows."""
    page.get_by_label("Name", exact=True).fill(name)
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("region", name="Your new API key")).to_be_visible()
    return page.get_by_label("The new API key").input_value()


def _reload_until(page: Page, cell: Locator, text: str, timeout: float = 15.0) -> None:
    """Usage is settled from the request's usage event, a few milliseconds after the answer."""
    deadline = time.monotonic() + timeout
    while True:
        page.reload()
        expect(page.locator("#stat-requests")).not_to_have_text("–")  # account, keys and usage rendered
        if cell.inner_text() == text:
            return
        assert time.monotonic() < deadline, f"never {text!r}, still {cell.inner_text()!r}"
        page.wait_for_timeout(200)


def _reload_until_recent(page: Page, count: int, timeout: float = 15.0) -> None:
    """The recent requests come from the ledger, which the usage event fills a moment
    after the key's counter (read-your-writes) already shows the request."""
    deadline = time.monotonic() + timeout
    while page.locator("#recent-rows tr").count() < count:
        assert time.monotonic() < deadline, f"{count} requests never appeared in the recent requests"
        page.wait_for_timeout(200)
        page.reload()
        expect(page.locator("#stat-requests")).not_to_have_text("–")


def test_create_use_budget_and_revoke_an_api_key(system: System, page: Page) -> None:
    token = sign_up(page, new_email())
    _connect_openai(system, token)
    expect(page.locator("#apikeys-empty")).to_have_text("No API keys yet.")
    expect(page.locator("#stat-budget")).to_have_text("None")

    key = _create(
        page,
        "backend",
        **{
            "Monthly budget (USD)": "5",
            "Requests per month": "100",
            "Requests per minute": "60",
            "Allowed models": f"{MODEL}, lowest-cost",
            "Expires in (days)": "30",
        },
    )
    expect(page.get_by_role("status")).to_have_text(
        "API key “backend” created. Copy it now: it will not be shown again."
    )
    expect(page.get_by_role("region", name="Your new API key")).to_contain_text("It will not be shown again")
    assert key.startswith("sb-") and len(key) >= 43
    expect(page.get_by_label("Name", exact=True)).to_have_value("")  # the form is ready for the next one
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("status")).to_have_text("API key copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "20-api-key-created")

    # What the form sent is what the API holds, and the list shows it.
    listed = _listed(system, token, "backend")
    assert (listed["monthly_budget_usd"], listed["monthly_request_limit"], listed["rpm"]) == (5.0, 100, 60)
    assert listed["allowed_models"] == [MODEL, "lowest-cost"]
    assert abs(listed["expires_at"] - (listed["created"] + 30 * 86400)) < 120
    row = _row(page, "backend")
    expect(row.locator(".masked")).to_have_text(f"sb-…{key[-4:]}")
    expect(_column(row, 1)).to_have_text(_day(listed["created"]))
    expect(_column(row, 2)).to_have_text("Never")
    expect(_column(row, 3)).to_have_text("0 / 100")
    expect(_column(row, 4)).to_have_text("$0.00 / $5.00")
    expect(_column(row, 5)).to_have_text(
        f"60 requests/minuteModels: {MODEL}, lowest-costExpires {_day(listed['expires_at'])}"
    )
    expect(_column(row, 6)).to_have_text("Active")

    # Shown once: dismissed, or after a reload, the key is nowhere in the page.
    page.get_by_role("button", name="I have saved it").click()
    expect(page.get_by_role("region", name="Your new API key")).to_be_hidden()
    assert key not in page.content()
    page.reload()
    expect(row.locator(".masked")).to_have_text(f"sb-…{key[-4:]}")
    assert key not in page.content()

    # The key works from Python; the list then counts its request and spend, and the usage
    # table says which request came from the key and which from the token.
    by_key = _chat(system, key, "from the key")
    assert by_key.status_code == 200, by_key.text
    by_token = _chat(system, token, "from the token")
    assert by_token.status_code == 200, by_token.text
    _reload_until(page, _column(row, 3), "1 / 100")
    _reload_until_recent(page, 2)
    expect(_column(row, 4)).to_contain_text(" / $5.00")
    expect(_column(row, 4)).not_to_have_text("$0.00 / $5.00")
    expect(_column(row, 2)).not_to_have_text("Never")
    expect(page.locator("#recent-rows tr")).to_have_count(2)
    key_row = page.locator(f"#recent-rows tr[data-request-id='{by_key.headers['x-request-id']}']")
    token_row = page.locator(f"#recent-rows tr[data-request-id='{by_token.headers['x-request-id']}']")
    expect(key_row.locator("td").nth(3)).to_have_text(f"backend sb-…{key[-4:]}")
    expect(token_row.locator("td").nth(3)).to_have_text("Token (JWT)")

    # The account budget, set from the page; a wrong amount is said in words.
    budget = page.get_by_label("Account budget (USD a month)")
    budget.fill("twenty")
    page.get_by_role("button", name="Set budget").click()
    expect(page.get_by_role("alert")).to_have_text("The budget is an amount in US dollars a month, like 5 or 12.50.")
    expect(budget).to_have_attribute("aria-invalid", "true")
    budget.fill("20")
    page.get_by_role("button", name="Set budget").click()
    expect(page.get_by_role("status")).to_have_text("Account budget set to $20.00 a month.")
    expect(page.locator("#stat-budget")).to_have_text("$20.00")
    expect(page.locator("#budget-text")).to_contain_text("of the $20.00 monthly budget spent")
    account = httpx.get(f"{system.base_url}/account", headers=_auth(token)).json()
    assert account["monthly_budget_usd"] == 20.0

    # A second key for the pictures: the once-only box above a list with a key in use.
    _create(page, "laptop", **{"Expires in (days)": "90"})
    expect(_column(_row(page, "laptop"), 6)).to_have_text("Active")
    section = page.locator("#api-keys")
    for table in ("#apikeys", "#recent"):  # both tables fit a desktop window: nothing hides off to the right
        wrap = page.locator(table).locator("..")
        assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), table
    shot(page, "21-api-keys-in-use")
    docs_shot(section, "console-keys.png")
    docs_shot(page, "console.png")
    page.get_by_role("button", name="I have saved it").click()

    page.get_by_role("button", name="Remove budget").click()
    expect(page.get_by_role("status")).to_have_text("Account budget removed.")
    expect(page.locator("#stat-budget")).to_have_text("None")
    expect(page.get_by_role("button", name="Remove budget")).to_be_hidden()
    assert httpx.get(f"{system.base_url}/account", headers=_auth(token)).json()["monthly_budget_usd"] is None

    # Revoking asks first; cancelling leaves the key alone.
    row.get_by_role("button", name="Revoke key backend").click()
    confirm = page.get_by_role("group", name="Revoke key backend?")
    expect(confirm).to_contain_text("Revoke “backend”? Applications using it are refused from now on")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    shot(page, "22-api-key-revoke-asks")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(_column(row, 6)).to_have_text("Active")
    assert _chat(system, key).status_code == 200
    row.get_by_role("button", name="Revoke key backend").click()
    confirm.get_by_role("button", name="Yes, revoke key backend").click()
    expect(page.get_by_role("status")).to_have_text("API key “backend” revoked. Requests with it are now refused.")
    expect(_column(row, 6)).to_have_text("Revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    expect(_column(_row(page, "laptop"), 6)).to_have_text("Active")
    refused = _chat(system, key)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    page.reload()
    expect(_column(row, 6)).to_have_text("Revoked")
    shot(page, "23-api-key-revoked")


def test_a_key_name_is_text_never_html(system: System, page: Page) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    token = sign_up(page, new_email())
    _connect_openai(system, token)
    key = _create(page, XSS_NAME)
    expect(page.locator("#new-apikey-name")).to_have_text(XSS_NAME)
    expect(page.get_by_role("status")).to_contain_text(f"“{XSS_NAME}” created")
    row = _row(page, XSS_NAME)
    expect(row.locator(".apikey-name")).to_have_text(XSS_NAME)

    assert _chat(system, key).status_code == 200
    _reload_until(page, _column(row, 3), "1")
    _reload_until_recent(page, 1)
    expect(page.locator("#recent-rows tr td").nth(3)).to_have_text(f"{XSS_NAME} sb-…{key[-4:]}")

    row.get_by_role("button", name=f"Revoke key {XSS_NAME}").click()
    expect(page.get_by_role("group", name=f"Revoke key {XSS_NAME}?")).to_contain_text(f"Revoke “{XSS_NAME}”?")
    page.get_by_role("button", name=f"Yes, revoke key {XSS_NAME}").click()
    expect(page.get_by_role("status")).to_contain_text(f"“{XSS_NAME}” revoked")
    expect(_column(row, 6)).to_have_text("Revoked")
    expect(page.locator("main img")).to_have_count(0)
    assert dialogs == []
    shot(page, "24-api-key-name-as-text")


def test_the_create_form_says_what_is_wrong(system: System, page: Page) -> None:
    sign_up(page, new_email())
    alert = page.get_by_role("alert")
    create = page.get_by_role("button", name="Create key")
    name = page.get_by_label("Name", exact=True)
    budget = page.get_by_label("Monthly budget (USD)")
    limit = page.get_by_label("Requests per month")

    create.click()
    expect(alert).to_have_text("Give the key a name of at most 100 characters.")
    expect(name).to_be_focused()
    name.fill("ci")
    budget.fill("five")
    create.click()
    expect(alert).to_have_text("The monthly budget is an amount in US dollars, like 5 or 12.50.")
    expect(budget).to_be_focused()
    expect(budget).to_have_attribute("aria-invalid", "true")
    budget.fill("12.50")
    limit.fill("1.5")
    create.click()
    expect(alert).to_have_text("Requests per month is a whole number, 1 or more.")
    expect(budget).not_to_have_attribute("aria-invalid", "true")
    limit.fill("")

    # An operator who has not enabled keys: the API's own explanation is shown.
    def disabled(route: Route) -> None:
        message = "API keys are not enabled on this StepBlend: its operator has not set STEPBLEND_API_KEY_PEPPER."
        route.fulfill(
            status=503,
            json={"error": {"message": message, "type": "api_error", "param": None, "code": "api_keys_disabled"}},
        )

    page.route("**/api/v1/account/api-keys", disabled)
    create.click()
    expect(alert).to_contain_text("API keys are not enabled on this StepBlend")
    expect(page.get_by_role("region", name="Your new API key")).to_be_hidden()
    page.unroute("**/api/v1/account/api-keys")

    create.click()
    expect(page.get_by_role("region", name="Your new API key")).to_be_visible()
    expect(_column(_row(page, "ci"), 4)).to_have_text("$0.00 / $12.50")


def test_the_recent_requests_say_which_endpoint_each_came_through(system: System, page: Page) -> None:
    token = sign_up(page, new_email())
    _connect_openai(system, token)
    assert _chat(system, token).status_code == 200
    embedded = httpx.post(
        f"{system.base_url}/embeddings",
        headers=_auth(token),
        json={"model": "text-embedding-3-small", "input": "hello"},
        timeout=30,
    )
    assert embedded.status_code == 200, embedded.text
    _reload_until_recent(page, 2)
    rows = page.locator("#recent-rows tr")
    embedding_row = page.locator(f"#recent-rows tr[data-request-id='{embedded.headers['x-request-id']}']")
    expect(embedding_row.locator("td").nth(1)).to_have_text("text-embedding-3-small embeddings")
    expect(rows.locator("td .endpoint")).to_have_text(["embeddings", "chat"])
