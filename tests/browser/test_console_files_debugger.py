"""The session page's side panels in Chromium: the workspace file browser (upload, list, preview,
download, folders, delete, refusals shown in place, refreshed when a task wrote files) and the
debugger panel (a workflow's debug run paused, edited, stepped and continued from the page).

Everything the test sets up or checks outside the page goes over HTTP (the `http` fixture):
Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import DaphneServer, new_session, screenshot, wait_for_task
from tests.transport.conftest import live_daphne

pytestmark = [pytest.mark.browser, pytest.mark.transport]

PNG = base64.b64decode(  # one pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
UPLOAD_LIMIT = 64 * 1024  # WORKSPACE_MAX_FILE_BYTES of this module's server
WAIT_MS = 30_000


@pytest.fixture
def daphne_server(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    """The live server of tests/transport, with a small per-file upload limit (so a refused
    upload is cheap to provoke)."""
    with live_daphne(
        tmp_path, STREAM_HEARTBEAT_S=1, WORKSPACE_MAX_FILE_BYTES=UPLOAD_LIMIT
    ) as server:
        yield server


def _open(context: Any, server: DaphneServer, session_id: str) -> tuple[Any, list[str]]:
    """The session page at 1280x800, and the uncaught script errors it raises."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{server.url}/console/sessions/{session_id}/")
    # The live stream is up (session.js): tasks created from now on reach the page as events.
    expect(page.locator('#conn[data-state="connected"]')).to_be_attached(timeout=WAIT_MS)
    return page, errors


def test_workspace_files(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    from playwright.sync_api import expect

    session_id = new_session(http, "shell", "files")
    page, errors = _open(browser_context, daphne_server, session_id)
    panel = page.locator("#files-panel")
    expect(panel.get_by_text("No files yet — upload one or let a task write some")).to_be_visible(
        timeout=WAIT_MS
    )

    # Upload through the file input (several files at once): they are in the workspace and
    # in the list.
    text = "hello from the browser\nsecond line ✓\n"
    page.set_input_files(
        "#files-input",
        files=[
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": text.encode()},
            {"name": "dot.png", "mimeType": "image/png", "buffer": PNG},
            {"name": "blob.bin", "mimeType": "application/octet-stream", "buffer": b"\0\1\2x"},
        ],
    )
    row = panel.locator('#files-list li[data-path="notes.txt"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(panel.locator("#files-list li.file-row")).to_have_count(3)
    stored = http.get(f"/api/v1/sessions/{session_id}/workspace/files/notes.txt")
    assert stored.status_code == 200 and stored.text == text

    # Preview shows its text; the download is the same bytes.
    row.get_by_role("button", name="Preview notes.txt").click()
    expect(page.locator("#files-preview pre")).to_have_text(text, timeout=WAIT_MS)
    expect(page.locator("#files-preview-title")).to_be_focused()
    with page.expect_download() as download:
        row.get_by_role("link", name="Download notes.txt").click()
    assert Path(download.value.path()).read_text() == text
    assert download.value.suggested_filename == "notes.txt"
    page.locator("#files-preview pre").focus()
    page.keyboard.press("Escape")  # closes the preview; focus returns to the file
    expect(page.locator("#files-preview")).to_be_hidden()
    expect(row.get_by_role("button", name="Preview notes.txt")).to_be_focused()
    # An image is shown as one; other binary files are not dumped as text.
    panel.get_by_role("button", name="Preview dot.png").click()
    image = page.locator("#files-preview img")
    expect(image).to_have_attribute("src", re.compile("^blob:"), timeout=WAIT_MS)
    page.wait_for_function("() => document.querySelector('#files-preview img')?.naturalWidth === 1")
    panel.get_by_role("button", name="Preview blob.bin").click()
    expect(page.locator("#files-preview-body")).to_contain_text("Binary file", timeout=WAIT_MS)

    # A task writes out/result.txt: the list refreshes by itself and shows the folder.
    created = http.post(
        f"/api/v1/sessions/{session_id}/tasks",
        json={"input": {"command": "mkdir -p out && printf 'forty-two\\n' > out/result.txt"}},
    )
    assert created.status_code == 201, created.text
    assert wait_for_task(http, created.json()["id"], timeout=120)["status"] == "succeeded"
    folder = panel.get_by_role("button", name="Open folder out")
    expect(folder).to_be_visible(timeout=WAIT_MS)
    folder.focus()
    page.keyboard.press("Enter")
    expect(panel.locator("#files-crumbs [aria-current]")).to_have_text("out", timeout=WAIT_MS)
    result = panel.get_by_role("button", name="Preview result.txt")
    expect(result).to_be_focused(timeout=WAIT_MS)
    page.keyboard.press("Enter")
    expect(page.locator("#files-preview pre")).to_have_text("forty-two\n", timeout=WAIT_MS)
    screenshot(page, "console-files.png")

    # An upload the API refuses (over WORKSPACE_MAX_FILE_BYTES): its error, in place.
    panel.locator("#files-crumbs").get_by_role("button", name="Workspace").click()
    expect(row).to_be_visible(timeout=WAIT_MS)
    page.set_input_files(
        "#files-input",
        files=[{"name": "big.bin", "mimeType": "application/octet-stream",
                "buffer": b"x" * (UPLOAD_LIMIT + 1)}],
    )  # fmt: skip
    error = panel.locator("#files-error")
    expect(error).to_contain_text(f"larger than {UPLOAD_LIMIT} bytes", timeout=WAIT_MS)
    expect(error).to_contain_text("payload_too_large")
    expect(panel.locator('#files-progress li[data-path="big.bin"]')).to_contain_text("larger than")
    expect(panel.locator('#files-list li[data-path="big.bin"]')).to_have_count(0)
    listing = http.get(f"/api/v1/sessions/{session_id}/workspace/files").json()
    assert {"notes.txt", "out"} <= {e["path"] for e in listing["entries"]}
    assert "big.bin" not in {e["path"] for e in listing["entries"]}

    # Files dropped on the panel are uploaded into the folder shown.
    transfer = page.evaluate_handle(
        """() => {
          const transfer = new DataTransfer();
          transfer.items.add(new File(["dropped\\n"], "dropped.txt", {type: "text/plain"}));
          return transfer;
        }"""
    )
    panel.dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(panel).to_have_class(re.compile(r"\bdropping\b"))
    panel.dispatch_event("drop", {"dataTransfer": transfer})
    expect(panel).not_to_have_class(re.compile(r"\bdropping\b"))
    expect(panel.locator('#files-list li[data-path="dropped.txt"]')).to_be_visible(timeout=WAIT_MS)
    expect(error).to_be_hidden()
    dropped = http.get(f"/api/v1/sessions/{session_id}/workspace/files/dropped.txt")
    assert dropped.status_code == 200 and dropped.text == "dropped\n"

    # Delete, after a confirmation.
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete notes.txt").click()
    expect(row).to_have_count(0, timeout=WAIT_MS)
    gone = http.get(f"/api/v1/sessions/{session_id}/workspace/files/notes.txt")
    assert gone.status_code == 404
    assert errors == []

    # The share page (no sign-in) lists the same files read-only: no upload, no delete.
    share = http.post(f"/api/v1/sessions/{session_id}/share", json={})
    assert share.status_code == 201, share.text
    token = share.json()["token"]
    anonymous = browser_context.browser.new_context()
    try:
        shared = anonymous.new_page()
        shared.goto(f"{daphne_server.url}/console/shared/{token}/")
        files = shared.locator("#files-panel")
        item = files.locator('#files-list li[data-path="dropped.txt"]')
        expect(item).to_be_visible(timeout=WAIT_MS)
        expect(files.get_by_role("button", name="Open folder out")).to_be_visible()
        expect(files.locator("#files-upload")).to_be_hidden()
        expect(files.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
        expect(shared.locator("#debugger-panel")).to_have_count(0)
        link = item.get_by_role("link", name="Download dropped.txt")
        assert link.get_attribute("href") == f"/api/v1/shared/{token}/files/dropped.txt"
        item.get_by_role("button", name="Preview dropped.txt").click()
        expect(shared.locator("#files-preview pre")).to_have_text("dropped\n", timeout=WAIT_MS)
    finally:
        anonymous.close()


PIPE = {
    "slug": "pipe",
    "name": "pipe",
    "kind": "workflow",
    "spec": {
        "components": [
            {"id": "in", "type": "input"},
            {
                "id": "double",
                "type": "code",
                "language": "shell",
                "source": 'echo {\\"v\\": $((INPUT_X * 2))}',
            },
            {"id": "out", "type": "output"},
        ],
        "edges": [{"from": "in.x", "to": "double.x"}, {"from": "double.v", "to": "out.v"}],
    },
}


def test_debugger_panel(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    from playwright.sync_api import expect

    created = http.post("/api/v1/agents", json=PIPE)
    assert created.status_code == 201, created.text
    session_id = new_session(http, "pipe", "debug")
    page, errors = _open(browser_context, daphne_server, session_id)
    panel = page.locator("#debugger-panel")
    expect(panel.get_by_text("Select a task to see its steps")).to_be_visible(timeout=WAIT_MS)

    # A debug run that pauses before every component.
    debug = {"debug": {"breakpoints": [{"step_kind": "component"}]}}
    task = http.post(
        f"/api/v1/sessions/{session_id}/tasks", json={"input": {"x": 3}, "config": debug}
    )
    assert task.status_code == 201, task.text
    task_id = task.json()["id"]

    # The panel follows the newest task by itself; selecting it in the timeline pins it.
    paused = panel.locator("#dbg-paused")
    expect(paused).to_be_visible(timeout=WAIT_MS)
    expect(panel.locator("#dbg-task")).to_contain_text("Newest task")
    page.locator(f'article[data-task-id="{task_id}"] .task-select').click()
    expect(panel.locator("#dbg-task")).to_contain_text(f"Task {task_id[:8]}", timeout=WAIT_MS)
    expect(panel.locator("#dbg-paused-name")).to_have_text("in")
    expect(panel.locator("#dbg-paused-kind")).to_have_text("component")
    textarea = panel.get_by_label("Input of the step (JSON)")
    assert json.loads(textarea.input_value()) == {"x": 3}

    # Not JSON: refused before any request; JSON the step's schema refuses: the API's 400.
    edited = panel.get_by_role("button", name="Continue with edited input")
    textarea.fill('{"x": ')
    edited.click()
    expect(panel.locator('[data-field="input"] .field-error')).to_contain_text("Not valid JSON")
    expect(textarea).to_be_focused()
    textarea.fill("[1, 2]")
    edited.click()
    command_error = panel.locator("#dbg-command-error")
    expect(command_error).to_contain_text("does not match its schema", timeout=WAIT_MS)
    expect(command_error).to_contain_text("not of type 'object'")
    expect(paused).to_be_visible()
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "waiting"

    # Edit and continue: the next pause is "double", with the edited value.
    textarea.fill('{"x": 50}')
    edited.click()
    expect(panel.locator("#dbg-paused-name")).to_have_text("double", timeout=WAIT_MS)
    expect(paused).to_be_visible()
    assert json.loads(textarea.input_value()) == {"x": 50}
    done = panel.locator('details[data-step-id="in"]')
    expect(done).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    screenshot(page, "console-debugger.png")

    # The rest with the keyboard: Step (focus comes back to Step at the next pause), Continue.
    step = panel.get_by_role("button", name="Step", exact=True)
    step.focus()
    page.keyboard.press("Enter")
    expect(panel.locator("#dbg-paused-name")).to_have_text("out", timeout=WAIT_MS)
    expect(step).to_be_focused(timeout=WAIT_MS)
    assert json.loads(textarea.input_value()) == {"v": 100}
    page.keyboard.press("Shift+Tab")
    expect(panel.get_by_role("button", name="Continue", exact=True)).to_be_focused()
    page.keyboard.press("Enter")

    finished = wait_for_task(http, task_id, timeout=120)
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"v": 100}
    expect(paused).to_be_hidden(timeout=WAIT_MS)
    expect(panel.locator("#dbg-task .badge")).to_have_text("succeeded", timeout=WAIT_MS)
    for step_id in ("agent", "in", "double", "out"):
        item = panel.locator(f'details[data-step-id="{step_id}"]')
        expect(item).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    # A step opens to its input and output.
    panel.locator('details[data-step-id="double"] > summary').click()
    body = panel.locator('details[data-step-id="double"] .step-body')
    expect(body).to_contain_text("50")
    expect(body).to_contain_text("100")

    # Fork the finished run from its last step: the new task runs in a copy of the session.
    out = panel.locator('details[data-step-id="out"]')
    out.locator("summary").click()
    out.get_by_role("button", name="Fork from this step").click()
    link = out.get_by_role("link", name="Open its session")
    expect(link).to_be_focused(timeout=WAIT_MS)
    forks = http.get(f"/api/v1/tasks/{task_id}/forks").json()
    assert [f["forked_from_step"] for f in forks] == ["out"]
    assert link.get_attribute("href") == f"/console/sessions/{forks[0]['session_id']}/"
    assert forks[0]["session_id"] != session_id
    # It keeps the debug config, so it would wait at "out" for ten minutes: stop it.
    assert http.post(f"/api/v1/tasks/{forks[0]['id']}/cancel").status_code in (200, 202)
    assert errors == []
