"""The console's sign-in, agents, sessions and API keys pages in Chromium, on a live daphne:
sign in through the form and create an agent with the keyboard only (an invalid spec is refused
by the API, the error shows next to the field, the fixed spec lands on the agent page), create
a session from the sessions list, delete an agent, and an API key's life (shown once, works,
revoked, refused).

Everything the test sets up or checks outside the page goes over HTTP (the `http` fixture):
Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import CHROMIUM, DaphneServer, require, screenshot
from tests.procs import reap_zombie_children

pytestmark = [pytest.mark.browser, pytest.mark.transport]

WAIT_MS = 30_000
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _page(context: Any) -> Any:
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.page_errors = errors
    return page


def _tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until the focused element matches ``selector`` (keyboard only)."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement?.outerHTML.slice(0, 120)")
    raise AssertionError(f"Tab never reached {selector}; focus is on {focused}")


def _replace_text(page: Any, text: str) -> None:
    """Replace the focused field's text, as a user would: select all, type."""
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.type(text)


@pytest.fixture
def fresh_browser(daphne_server: DaphneServer, api_user: Any, http: httpx.Client) -> Iterator[Any]:
    """A Chromium context with no session cookie (the sign-in form is the way in)."""
    require(os.path.exists(CHROMIUM), "chromium is not installed (scripts/install-system-deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser.new_context()
        finally:
            browser.close()
    reap_zombie_children(("chrom",))


def test_sign_in_and_create_an_agent_with_the_keyboard(
    fresh_browser: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    from playwright.sync_api import expect

    page = _page(fresh_browser)
    # Signed out: the agents page sends to the sign-in form, which comes back afterwards.
    page.goto(f"{daphne_server.url}/console/agents/")
    expect(page).to_have_url(re.compile(r"/console/login/\?next=/console/agents/$"))
    expect(page.locator("#id_username")).to_be_focused(timeout=WAIT_MS)  # autofocus
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("wrong")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    _tab_to(page, "#id_password")
    page.keyboard.type("x")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{daphne_server.url}/console/agents/", timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_have_text("Agents")
    expect(page.locator("#agents-table")).to_contain_text("demo-llm")
    expect(page.get_by_role("link", name="Agents", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    screenshot(page, "console-agents.png")

    # The "Create agent" link, reached and followed with the keyboard.
    _tab_to(page, 'main a[href="/console/agents/new/"]')
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{daphne_server.url}/console/agents/new/", timeout=WAIT_MS)
    expect(page.locator("#f-slug")).to_be_focused(timeout=WAIT_MS)
    page.keyboard.type("kbd-agent")
    page.keyboard.press("Tab")
    page.keyboard.type("Keyboard agent")
    _tab_to(page, "#f-description")
    page.keyboard.type("Made without a mouse.")

    # A JSON typo is caught before anything is sent.
    _tab_to(page, "#f-spec")
    _replace_text(page, '{"network": ')
    _tab_to(page, "#agent-form button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.locator("#f-spec-error")).to_contain_text("Not valid JSON", timeout=WAIT_MS)
    expect(page.locator("#form-error")).to_be_focused()

    # Valid JSON the kind's schema refuses: the API's own message, next to the field.
    _tab_to(page, "#f-spec")
    _replace_text(page, '{"network": "wifi"}')
    expect(page.locator("#f-spec-error")).to_have_text("")  # cleared on edit
    _tab_to(page, "#agent-form button[type=submit]")
    page.keyboard.press("Enter")
    spec_error = page.locator("#f-spec-error")
    expect(spec_error).to_contain_text("at network: 'wifi' is not one of", timeout=WAIT_MS)
    expect(page.locator("#f-spec")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-error")).to_contain_text("The spec does not match its schema.")
    expect(page.locator("#form-error")).to_contain_text("invalid_input")
    screenshot(page, "console-agent-form-error.png")
    assert http.get("/api/v1/agents/kbd-agent").status_code == 404  # nothing was created

    _tab_to(page, "#f-spec")
    _replace_text(page, '{"allow_input_command": true, "network": "none"}')
    _tab_to(page, "#agent-form button[type=submit]")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/console/agents/{UUID}/$"), timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Keyboard agent")
    expect(page.locator("#agent-spec")).to_contain_text('"network": "none"')
    expect(page.locator("#versions-table tbody tr")).to_have_count(1)
    agent = http.get("/api/v1/agents/kbd-agent").json()
    assert page.url.endswith(f"/console/agents/{agent['id']}/")
    assert agent["spec"] == {"allow_input_command": True, "network": "none"}
    assert agent["description"] == "Made without a mouse."
    assert page.page_errors == []


def test_new_session_and_agent_deletion(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    from playwright.sync_api import expect

    for name in ("nightly build", "refactor parser"):
        assert http.post("/api/v1/sessions", json={"agent": "shell", "name": name}).is_success
    page = _page(browser_context)
    page.goto(f"{daphne_server.url}/console/sessions/")
    expect(page.locator("#sessions-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
    screenshot(page, "console-sessions.png")

    # From an agent's page: "New session with this agent" preselects it.
    agent = http.get("/api/v1/agents/pytest").json()
    page.goto(f"{daphne_server.url}/console/agents/{agent['id']}/")
    page.get_by_role("link", name="New session with this agent").click()
    expect(page.locator("#ns-agent")).to_have_value(agent["id"], timeout=WAIT_MS)
    expect(page.locator("#ns-name")).to_be_focused()
    page.locator("#ns-name").fill("from the console")
    page.get_by_role("button", name="Create session").click()
    expect(page).to_have_url(re.compile(rf"/console/sessions/{UUID}/$"), timeout=WAIT_MS)
    expect(page.get_by_role("heading", level=1)).to_have_text("from the console")
    session_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    session = http.get(f"/api/v1/sessions/{session_id}").json()
    assert session["name"] == "from the console" and session["agent"]["slug"] == "pytest"

    # Deleting an agent asks first; cancelling keeps it, accepting deletes it.
    created = http.post(
        "/api/v1/agents", json={"slug": "short-lived", "name": "Short-lived", "spec": {}}
    )
    assert created.status_code == 201, created.text
    page.goto(f"{daphne_server.url}/console/agents/{created.json()['id']}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("button", name="Delete")).to_be_enabled()
    assert http.get("/api/v1/agents/short-lived").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/console/agents/\?deleted=short-lived$"), timeout=WAIT_MS)
    expect(page.locator("#agents-table")).not_to_contain_text("short-lived")
    assert http.get("/api/v1/agents/short-lived").status_code == 404
    assert page.page_errors == []


def test_api_key_shown_once_used_and_revoked(
    browser_context: Any, daphne_server: DaphneServer
) -> None:
    from playwright.sync_api import expect

    browser_context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=daphne_server.url
    )
    page = _page(browser_context)
    page.goto(f"{daphne_server.url}/console/api-keys/")
    # The fixtures' own key is listed (by prefix only).
    expect(page.locator("#keys-table tbody tr")).to_have_count(1, timeout=WAIT_MS)

    # Refused in place: no scope chosen.
    page.locator("#k-name").fill("reporting script")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#k-scopes-error")).not_to_be_empty(timeout=WAIT_MS)
    expect(page.locator("#create-key-error")).to_be_visible()

    page.get_by_label("sessions:read").check()
    page.get_by_role("button", name="Create key").click()
    panel = page.locator("#new-key")
    expect(panel).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#new-key-secret")).to_be_focused()
    key = page.locator("#new-key-secret").input_value()
    assert re.fullmatch(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}", key), key
    row = page.locator("#keys-table tbody tr", has_text="reporting script")
    expect(row.locator(".badge")).to_have_text("active")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#flash")).to_contain_text("clipboard")
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    screenshot(page, "console-api-keys.png")

    with httpx.Client(base_url=daphne_server.url, timeout=30) as client:
        bearer = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/v1/sessions", headers=bearer).status_code == 200
        # sessions:read only: writing is refused.
        assert (
            client.post("/api/v1/sessions", headers=bearer, json={"agent": "shell"}).status_code
            == 403
        )

        # Shown once: gone after "Done" and not in the page when it is loaded again.
        page.get_by_role("button", name="Done").click()
        expect(panel).to_be_hidden()
        expect(page.locator("#k-name")).to_be_focused()
        page.reload()
        expect(page.locator("#keys-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
        assert key.split(".")[1] not in page.content()

        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name=re.compile("^Revoke reporting script")).click()
        expect(row.locator(".badge")).to_have_text("revoked", timeout=WAIT_MS)
        expect(row.get_by_role("button")).to_have_count(0)
        refused = client.get("/api/v1/sessions", headers=bearer)
        assert refused.status_code == 401, refused.text
    assert page.page_errors == []
