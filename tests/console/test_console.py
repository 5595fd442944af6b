"""The console at `/`, driven in Chromium against the real system, and the usage API it reads.
(API keys and the account budget: test_console_api_keys.py, which also draws docs/console.png.)
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import openai
from playwright.sync_api import Page, Route, expect

from tests.console.conftest import PASSWORD, shot
from tests.console.conftest import new_email as _email
from tests.console.conftest import sign_up as _sign_up
from tests.support.system import System


def _origin(system: System) -> str:
    return system.base_url.removesuffix("/api/v1")


def _refresh_until_rows(page: Page, count: int, timeout: float = 15.0) -> None:
    """Usage is settled from the request's usage event, a few milliseconds after the answer."""
    rows = page.locator("#recent-rows tr")
    deadline = time.monotonic() + timeout
    while rows.count() < count:
        assert time.monotonic() < deadline, f"{count} requests never appeared in the usage list"
        page.get_by_role("button", name="Refresh").click()
        expect(page.get_by_role("status")).to_have_text("Usage updated.")
        page.wait_for_timeout(200)


def test_sign_up_copy_the_token_connect_a_key_and_see_the_request(system: System, page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in to StepBlend")).to_be_visible()
    shot(page, "01-sign-in")

    email = _email()
    token = _sign_up(page, email)
    expect(page.get_by_role("status")).to_have_text("Your account is ready. Copy your token below.")
    expect(page.locator("#who-email")).to_have_text(email)
    expect(page.locator("#who-plan")).to_have_text("free plan")
    expect(page.locator("#recent-empty")).to_be_visible()
    shot(page, "02-signed-up")

    # The token on the page is the one the API issued, and the copy button puts it on the clipboard.
    assert token.count(".") == 2
    assert page.evaluate("sessionStorage.getItem('stepblend.token')") == token
    page.get_by_role("button", name="Copy token").click()
    expect(page.get_by_role("status")).to_have_text("Token copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    shot(page, "03-token-copied")

    # The examples show the OpenAI SDK, the Anthropic SDK and Claude Code, each with
    # this gateway's base URL (the anthropic SDK's is /api: it appends /v1/messages).
    page.get_by_text("Examples: OpenAI SDK, Anthropic SDK, Claude Code").click()
    example = page.locator("#example").inner_text()
    origin = system.base_url.removesuffix("/api/v1")
    assert f'OpenAI(api_key="YOUR_STEPBLEND_TOKEN", base_url="{system.base_url}")' in example
    assert f'Anthropic(api_key="YOUR_STEPBLEND_TOKEN", base_url="{origin}/api")' in example
    assert f"ANTHROPIC_BASE_URL={origin}/api ANTHROPIC_AUTH_TOKEN=YOUR_STEPBLEND_TOKEN \\" in example
    assert "ANTHROPIC_MODEL=claude-sonnet-4-5 claude" in example

    key = f"sk-console-{uuid.uuid4().hex}"
    page.get_by_label("OpenAI API key", exact=True).fill(key)
    page.get_by_role("button", name="Connect OpenAI key").click()
    state = page.locator("#key-state-openai")
    expect(state).to_contain_text("Connected")
    expect(state).to_contain_text(key[-4:])
    expect(page.get_by_role("status")).to_contain_text("OpenAI key saved")
    expect(page.get_by_label("New OpenAI API key")).to_have_value("")
    assert key not in page.content()  # masked once saved, and the field is emptied
    expect(page.locator("#key-state-anthropic")).to_have_text("Not connected")
    shot(page, "04-key-connected")

    # The openai SDK with the token read from the page, on the key connected from the page.
    client = openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=0)
    marker = f"console {uuid.uuid4().hex}"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": marker}]
    )
    assert raw.parse().choices[0].message.content
    request_id = raw.headers["x-request-id"]
    for _ in client.chat.completions.create(
        model="openai:gpt-4o", messages=[{"role": "user", "content": "and a stream"}], stream=True
    ):
        pass
    seen = [r for r in system.mock_requests() if marker in json.dumps(r["body"])]
    assert [r["headers"]["authorization"] for r in seen] == [f"Bearer {key}"]

    _refresh_until_rows(page, 2)
    rows = page.locator("#recent-rows tr")
    newest, first = rows.nth(0), rows.nth(1)
    expect(first).to_have_attribute("data-request-id", request_id)
    expect(first).to_contain_text("gpt-4o-mini")
    expect(newest).to_contain_text("gpt-4o")
    for row in (first, newest):
        expect(row).to_contain_text("OpenAI")
        expect(row).to_contain_text("Completed")
        expect(row.locator("td").nth(3)).to_have_text("Token (JWT)")  # not an API key
        expect(row.locator("td").nth(5)).to_contain_text("$")
    expect(page.locator("#stat-requests")).to_have_text("2")
    expect(page.locator("#stat-limit")).to_have_text("1,000")
    expect(page.locator("#quota-text")).to_contain_text("2 of 1,000 requests used this month")
    expect(page.locator("#stat-spend")).not_to_have_text("$0.00")
    expect(page.locator("#chart svg rect.bar")).to_have_count(1)
    expect(page.locator("#chart svg rect.bar title")).to_contain_text("2 requests")
    shot(page, "05-usage")

    # The token lives in the tab's sessionStorage: a reload keeps the session and the list.
    page.reload()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator("#recent-rows tr")).to_have_count(2)
    shot(page, "06-after-reload")

    page.get_by_role("button", name="Remove OpenAI key").click()
    expect(state).to_have_text("Not connected")
    expect(page.get_by_role("status")).to_have_text("OpenAI key removed.")
    shot(page, "07-key-removed")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to StepBlend")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    expect(page.get_by_label("Your StepBlend token (JWT)")).to_have_value("")
    shot(page, "08-signed-out")

    # Signing in again gives a working token and the same usage.
    page.get_by_label("Email").fill(email.upper())
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status")).to_have_text("Signed in.")
    expect(page.locator("#recent-rows tr")).to_have_count(2)


def test_errors_are_said_in_words(system: System, page: Page, console_errors: list[str]) -> None:
    page.goto("/")
    alert = page.get_by_role("alert")
    email, password = page.get_by_label("Email"), page.get_by_label("Password", exact=True)
    sign_in = page.get_by_role("button", name="Sign in")

    email.fill("not-an-email")
    password.fill(PASSWORD)
    sign_in.click()
    expect(alert).to_have_text("Enter a valid email address, like you@example.com.")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_be_focused()

    email.fill(_email())
    password.fill("short")
    sign_in.click()
    expect(alert).to_have_text("The password must be at least 8 characters long.")
    expect(password).to_be_focused()

    password.fill("wrong password")
    sign_in.click()  # 401
    expect(alert).to_have_text("Wrong email or password.")

    taken = _email()
    assert httpx.post(f"{system.base_url}/auth/signup", json={"email": taken, "password": PASSWORD}).status_code == 201
    email.fill(taken)
    password.fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()  # 409
    expect(alert).to_have_text("An account with this email already exists. Sign in instead.")
    shot(page, "09-error-account-exists")

    # Statuses the running system will not produce on demand, answered by the browser's router.
    def answer(status: int, code: str, message: str) -> None:
        def fulfill(route: Route) -> None:
            body = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
            route.fulfill(status=status, json=body)

        page.unroute("**/api/v1/auth/login")
        page.route("**/api/v1/auth/login", fulfill)
        sign_in.click()

    answer(503, "billing_unavailable", "StepBlend's billing service is unavailable; try again shortly.")
    expect(alert).to_have_text(
        "StepBlend is temporarily unavailable: one of its services is not answering. Try again in a minute."
    )
    shot(page, "10-error-unavailable")
    answer(429, "plan_limit_exceeded", "Monthly request limit reached.")
    expect(alert).to_have_text("This account has used every request its plan allows this month.")
    answer(429, "", "Too many concurrent requests.")
    expect(alert).to_have_text("Too many requests at once. Wait a moment and try again.")
    answer(500, "internal_error", "StepBlend hit an internal error.")
    expect(alert).to_have_text("Something went wrong on StepBlend's side: StepBlend hit an internal error.")
    page.unroute("**/api/v1/auth/login")
    page.route("**/api/v1/auth/login", lambda route: route.abort())
    sign_in.click()
    expect(alert).to_contain_text("StepBlend could not be reached.")
    page.unroute("**/api/v1/auth/login")
    assert console_errors == ["Failed to load resource: net::ERR_FAILED"]  # the aborted request
    console_errors.clear()

    # A token that no longer works (expired, revoked, garbled) ends the session, saying why.
    page.evaluate("sessionStorage.setItem('stepblend.token', 'not.a.token')")
    page.reload()
    expect(alert).to_have_text(
        "Your session has ended (the token expired or is no longer valid). Please sign in again."
    )
    expect(page.get_by_role("heading", name="Sign in to StepBlend")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_usable_with_the_keyboard_alone(system: System, page: Page) -> None:
    page.goto("/")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["y"] >= 0  # shown when focused
    page.keyboard.press("Tab")

    page.keyboard.type(_email())
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Tab")
    create = page.get_by_role("button", name="Create account")
    expect(create).to_be_focused()
    assert create.evaluate("b => getComputedStyle(b).outlineStyle") == "solid"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your account")).to_be_focused()

    page.keyboard.press("Tab")
    expect(page.get_by_label("Your StepBlend token (JWT)")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Copy token")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.get_by_role("status")).to_have_text("Token copied to the clipboard.")

    key_field = page.get_by_label("OpenAI API key", exact=True)
    for _ in range(10):
        if key_field.evaluate("e => e === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(key_field).to_be_focused()
    page.keyboard.type("sk-keyboard-0123456789abcd")
    page.keyboard.press("Enter")
    expect(page.locator("#key-state-openai")).to_contain_text("abcd")
    expect(page.get_by_label("New OpenAI API key")).to_be_focused()
    shot(page, "11-keyboard")


def test_the_page_loads_nothing_from_elsewhere(system: System, page: Page) -> None:
    origin = _origin(system)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto("/")
    assert response is not None and response.ok
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    _sign_up(page, _email())
    page.wait_for_load_state("networkidle")
    assert all(url.startswith(origin + "/") for url in requested), requested
    assets = {url.removeprefix(origin) for url in requested if "/api/" not in url}
    assert assets == {"/", "/console/console.css", "/console/console.js"}

    js = httpx.get(f"{origin}/console/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    missing = httpx.get(f"{origin}/console/secrets.toml")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_usage_api(system: System) -> None:
    email = _email()
    token = httpx.post(f"{system.base_url}/auth/signup", json={"email": email, "password": PASSWORD}).json()["token"]
    auth = {"authorization": f"Bearer {token}"}
    assert httpx.put(
        f"{system.base_url}/account/keys/openai", headers=auth, json={"api_key": "sk-usage-1234"}
    ).is_success
    client = openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=0)
    ids = [
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"usage {i}"}]
        ).headers["x-request-id"]
        for i in range(3)
    ]
    deadline = time.monotonic() + 15
    while True:
        body = httpx.get(f"{system.base_url}/account/usage", headers=auth).json()
        if len(body["data"]) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert body["object"] == "list"
    assert [r["request_id"] for r in body["data"]] == ids[::-1]  # newest first
    row = body["data"][0]
    assert set(row) >= {
        "request_id",
        "created",
        "model",
        "provider",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "status",
        "stream",
    }
    assert row["model"] == "gpt-4o-mini" and row["provider"] == "openai" and row["status"] == "completed"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["cost_usd"] > 0
    assert abs(row["created"] - time.time()) < 120
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert body["daily"][-1] == {"date": today, "requests": 3}
    assert body["daily"][0]["date"] == today[:8] + "01"
    assert body["requests_this_month"] == 3 and body["monthly_limit"] == 1000 and body["plan"] == "free"
    assert body["spend_this_month_usd"] == sum(r["cost_usd"] for r in body["data"]) or body["spend_this_month_usd"] > 0

    limited = httpx.get(f"{system.base_url}/account/usage", params={"limit": 1}, headers=auth).json()
    assert [r["request_id"] for r in limited["data"]] == ids[-1:]
    too_many = httpx.get(f"{system.base_url}/account/usage", params={"limit": 1000}, headers=auth)
    assert too_many.status_code == 400 and too_many.json()["error"]["type"] == "invalid_request_error"
    anonymous = httpx.get(f"{system.base_url}/account/usage")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{system.base_url.replace('/api/v1', '/v1')}/account/usage", headers=auth).status_code == 200
