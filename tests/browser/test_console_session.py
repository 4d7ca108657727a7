"""The console's session page and share view in a real Chromium against a real daphne: a task
typed into the input box streams its ANSI-coloured output live, cancel works, a dropped
WebSocket resumes without losing or repeating an event, notebook outputs render (a PNG, HTML in
a sandboxed iframe, markdown, a JSON tree), the share view follows live over SSE, and a
50,000-event session opens on its newest page with a bounded DOM.

With ``SCREENSHOTS_DIR`` set, the tests save ``console-session.png``, ``console-outputs.png``
and ``console-shared.png`` there (1280x800, full page)."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from typing import Any

import httpx
import pytest
from django.utils import timezone

from sessions.models import Agent, Event, Session
from tests import factories
from tests.browser.conftest import DaphneServer, new_session, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.transport]

VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 30_000
BIG = 50_000


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _open(context: Any, url: str) -> Any:
    page = context.new_page()
    page.set_viewport_size(VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(url)
    return page


def _no_page_errors(page: Any, expected: str = "\0") -> None:
    assert [e for e in page.errors if expected not in e] == []


def _png(width: int = 96, height: int = 48) -> bytes:
    """A valid RGB PNG (a red-to-blue gradient), made here: no binary fixture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((255 - x * 2, 40, x * 2)) for x in range(width))
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_a_typed_task_streams_coloured_output_live_and_the_share_view_follows(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    expect = _expect()
    sid = new_session(http, "shell", "console demo")
    page = _open(browser_context, f"{daphne_server.url}/console/sessions/{sid}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    expect(page.locator("#timeline-empty")).to_be_visible()
    expect(page.locator("#timeline-empty")).to_contain_text("No tasks yet")

    command = page.locator("#in-command")
    command.fill(r"for i in 1 2 3; do printf '\033[31mline %s\033[0m\n' $i; sleep 0.8; done")
    command.press("Control+Enter")  # submitted with the keyboard

    task = page.locator("article.task[data-task-id]").first
    terminal = task.locator("pre.terminal")
    expect(terminal).to_contain_text("line 1", timeout=WAIT_MS)
    # Streamed: line 1 is on screen while the task is still producing the rest.
    assert "line 3" not in terminal.inner_text()
    assert task.locator(".task-status").inner_text() in ("running", "queued")
    red = terminal.locator(".ansi-red-fg", has_text="line 1")
    expect(red).to_have_count(1)
    rgb = red.evaluate("e => getComputedStyle(e).color")
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    assert r > 180 and g < 140 and b < 140, rgb
    expect(task.locator(".task-status")).to_have_text("succeeded", timeout=WAIT_MS)
    assert [s.strip() for s in terminal.inner_text().splitlines()] == ["line 1", "line 2", "line 3"]
    expect(task.locator(".proc-exit")).to_contain_text("exit code 0")
    expect(task.locator(".task-cancel")).to_be_hidden()
    expect(page.locator("#timeline-empty")).to_be_hidden()
    expect(command).to_be_focused()  # back in the box for the next command
    screenshot(page, "console-session.png")

    # The share view: no sign-in (a fresh context), read-only, live over SSE.
    share = http.post(f"/api/v1/sessions/{sid}/share", json={})
    assert share.status_code == 201, share.text
    anonymous = browser_context.browser.new_context()
    try:
        shared = _open(anonymous, f"{daphne_server.url}/console/shared/{share.json()['token']}/")
        expect(shared.locator("#conn")).to_have_attribute(
            "data-state", "connected", timeout=WAIT_MS
        )
        expect(shared.locator("pre.terminal")).to_contain_text("line 3")
        expect(shared.locator(".task-status").first).to_have_text("succeeded")
        assert shared.locator("#task-form").count() == 0
        assert shared.locator(".task-cancel").count() == 0
        assert shared.locator("#debugger-panel").count() == 0
        created = http.post(
            f"/api/v1/sessions/{sid}/tasks", json={"input": {"command": "echo shared-live"}}
        )
        assert created.status_code == 201, created.text
        expect(shared.locator("article.task[data-task-id]")).to_have_count(2, timeout=WAIT_MS)
        expect(
            shared.locator("article.task[data-task-id]").nth(1).locator("pre.terminal")
        ).to_contain_text("shared-live", timeout=WAIT_MS)
        expect(shared.locator(".task-status").nth(1)).to_have_text("succeeded", timeout=WAIT_MS)
        screenshot(shared, "console-shared.png")
        _no_page_errors(shared)
        # The owner's page got the API-created task live too.
        expect(page.locator("article.task[data-task-id]")).to_have_count(2)
    finally:
        anonymous.close()
    _no_page_errors(page)


def test_cancel_and_resume_after_a_dropped_socket(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    expect = _expect()
    sid = new_session(http, "shell", "cancel and resume")
    page = _open(browser_context, f"{daphne_server.url}/console/sessions/{sid}/")
    # Every WebSocket of the page goes through this route, which loses one event frame on
    # the way (tick 30, long after the reconnect below): the page must see the gap and fill it.
    sockets: list[str] = []
    lost: list[int] = []

    def route(ws: Any) -> None:
        sockets.append(ws.url)
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            text = frame.get("data", {}).get("text", "") if "seq" in frame else ""
            if not lost and re.search(r"\btick 30\n", text):
                lost.append(frame["seq"])
                return
            ws.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws/sessions/"), route)
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)

    # Cancel a running task from its block.
    page.locator("#in-command").fill("sleep 60")
    page.get_by_role("button", name="Run").click()
    sleeper = page.locator("article.task[data-task-id]").first
    expect(sleeper.locator(".task-status")).to_have_text("running", timeout=WAIT_MS)
    sleeper.get_by_role("button", name="Cancel").click()
    expect(sleeper.locator(".task-status")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(sleeper.locator(".task-cancel")).to_be_hidden()

    # A debug run pauses before its first step (the command); a waiting task can be cancelled.
    page.get_by_label("Debug run (pause before each step)").check()
    page.locator("#in-command").fill("echo debugged")
    page.locator("#in-command").press("Control+Enter")
    debugged = page.locator("article.task[data-task-id]").nth(1)
    expect(debugged.locator(".task-status")).to_have_text("waiting", timeout=WAIT_MS)
    expect(debugged.locator(".ev.debug-paused")).to_contain_text("Paused before command")
    task_id = debugged.get_attribute("data-task-id")
    config = http.get(f"/api/v1/tasks/{task_id}").json()["config"]
    assert config["debug"] == {"breakpoints": [{"step_kind": "", "name": ""}]}
    debugged.get_by_role("button", name="Cancel").click()
    expect(debugged.locator(".task-status")).to_have_text("cancelled", timeout=WAIT_MS)
    page.get_by_label("Debug run (pause before each step)").uncheck()

    # Drop the socket while a task streams: after the reconnect (and the lost frame) every
    # line is there, once.
    page.locator("#in-command").fill('for i in $(seq 1 40); do echo "tick $i"; sleep 0.15; done')
    page.locator("#in-command").press("Control+Enter")
    ticker = page.locator("article.task[data-task-id]").nth(2)
    expect(ticker.locator("pre.terminal")).to_contain_text("tick 3", timeout=WAIT_MS)
    page.evaluate("window.consoleStream.socket.close()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    expect(ticker.locator(".task-status")).to_have_text("succeeded", timeout=WAIT_MS)
    ticks = re.findall(r"^tick (\d+)$", ticker.locator("pre.terminal").inner_text(), re.M)
    assert ticks == [str(i) for i in range(1, 41)]
    assert lost and ticker.locator(f'.ev[data-seq="{lost[0]}"]').count() == 1  # backfilled
    seqs = page.eval_on_selector_all(
        "#timeline .ev[data-seq]", "els => els.map(e => +e.dataset.seq)"
    )
    assert len(seqs) == len(set(seqs)), "an event was rendered twice"
    # The second socket resumed after the last seq the page had.
    resumed = [int(m) for u in sockets[1:] for m in re.findall(r"after=(\d+)", u)]
    assert resumed and resumed[0] > 0, sockets
    _no_page_errors(page)


def test_notebook_outputs_render(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    expect = _expect()
    agent = http.post(
        "/api/v1/agents", json={"slug": "nb", "name": "Notebook", "kind": "python", "spec": {}}
    )
    assert agent.status_code == 201, agent.text
    sid = new_session(http, "nb", "outputs")
    page = _open(browser_context, f"{daphne_server.url}/console/sessions/{sid}/")
    png = base64.b64encode(_png()).decode()
    code = (
        "from IPython.display import HTML, JSON, Image, Markdown, display\n"
        "import base64\n"
        f"display(Image(data=base64.b64decode('{png}')))\n"
        'display(HTML(\'<b id="x">bold html</b><script>parent.document.title="pwned"</script>\'))\n'
        "display(Markdown('**bold markdown** and `code`'))\n"
        "display(JSON({'answer': 42, 'items': [1, 2]}))\n"
        "print('\\033[32mgreen text\\033[0m')"
    )
    page.locator("#in-code").fill(code)
    page.get_by_role("button", name="Run").click()
    task = page.locator("article.task[data-task-id]").first
    expect(task.locator(".task-status")).to_have_text("succeeded", timeout=90_000)

    image = task.locator(".mime img")
    expect(image).to_have_count(1)
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") == 96
    frame = task.locator(".mime iframe")
    expect(frame).to_have_count(1)
    assert frame.get_attribute("sandbox") == ""  # no scripts, no same-origin
    expect(page.frame_locator(".mime iframe").locator("#x")).to_have_text("bold html")
    # Its script was refused by the sandbox (Chromium says so in the console), not run.
    blocked = "Blocked script execution in 'about:srcdoc'"
    assert page.title() != "pwned" and any(blocked in e for e in page.errors), page.errors
    expect(task.locator(".mime .markdown strong")).to_have_text("bold markdown")
    expect(task.locator(".mime .json-tree")).to_contain_text('"answer"')
    expect(task.locator(".terminal .ansi-green-fg")).to_have_text("green text")
    expect(task.locator(".ev.cell .cell-code")).to_contain_text("display(Image(")
    screenshot(page, "console-outputs.png")

    # An image too large to travel inline is stored as an artifact and loaded from there.
    noise = (
        "import os, struct, zlib\n"
        "def png(w, h, raw):\n"
        "    def chunk(t, d):\n"
        "        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))\n"
        "    rows = b''.join(b'\\x00' + raw[y * w * 3:(y + 1) * w * 3] for y in range(h))\n"
        "    head = struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)\n"
        "    return (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', head)\n"
        "            + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))\n"
        "display(Image(data=png(120, 90, os.urandom(120 * 90 * 3))))"
    )
    page.locator("#in-code").fill(noise)
    page.locator("#in-code").press("Control+Enter")
    second = page.locator("article.task[data-task-id]").nth(1)
    expect(second.locator(".task-status")).to_have_text("succeeded", timeout=90_000)
    stored = second.locator('.mime img[src*="/api/v1/artifacts/"]')
    expect(stored).to_have_count(1)
    stored.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=stored.element_handle()
    )
    assert stored.evaluate("img => img.naturalWidth") == 120
    _no_page_errors(page, expected=blocked)

    # A chat agent: the box sends messages; the reply streams, then shows as markdown.
    sid = new_session(http, "demo-llm", "chat")
    chat = _open(browser_context, f"{daphne_server.url}/console/sessions/{sid}/")
    message = chat.get_by_role("textbox", name="Message")
    message.fill("hello there")
    message.press("Control+Enter")
    turn = chat.locator("article.task[data-task-id]").first
    expect(turn.locator(".task-type")).to_have_text("chat")
    expect(turn.locator(".msg.user")).to_contain_text("hello there", timeout=WAIT_MS)
    expect(turn.locator(".task-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(turn.locator(".msg.assistant .markdown").first).to_be_visible()
    expect(turn.locator(".msg-body.streaming")).to_have_count(0)  # every reply completed
    _no_page_errors(chat)


@pytest.fixture
def big_session(api_user: Any) -> str:
    """A session of 50,000 events (seq 1..50000), written through the ORM before the browser
    starts: one task whose output is one event per line."""
    from sessions.services.tasks import task_claim_next, task_finish

    agent = Agent.objects.get(slug="shell", owner=api_user)
    session = factories.make_session(api_user, agent, name="fifty thousand")
    task = factories.make_task(session, input={"command": f"seq {BIG}"})
    (running,) = task_claim_next(worker="tests", limit=1, session_id=session.pk)
    session.refresh_from_db()
    first, last = session.last_seq + 1, BIG - 1  # the terminal status will be seq BIG
    now = timezone.now()

    def event(seq: int) -> Event:
        kind, data = (
            ("process.stdout", {"process_id": "p1", "text": f"row {seq}\n"})
            if seq % 1000
            else ("log", {"level": "info", "message": f"checkpoint {seq}"})
        )
        return Event(session=session, task=task, seq=seq, created_at=now, type=kind, data=data)

    Event.objects.bulk_create((event(seq) for seq in range(first, last + 1)), batch_size=5000)
    Session.objects.filter(pk=session.pk).update(last_seq=last)
    task_finish(task=running, status="succeeded", result={"exit_code": 0})
    session.refresh_from_db()
    assert session.last_seq == BIG and session.events.count() == BIG
    return str(session.uuid)


def test_a_fifty_thousand_event_session_stays_bounded(
    big_session: str, browser_context: Any, daphne_server: DaphneServer
) -> None:
    expect = _expect()
    page = _open(browser_context, f"{daphne_server.url}/console/sessions/{big_session}/")
    terminal = page.locator("pre.terminal")
    expect(terminal).to_contain_text(f"row {BIG - 1}", timeout=WAIT_MS)  # the newest page
    expect(page.locator(".task-status")).to_have_text("succeeded")
    count = "document.querySelectorAll('#timeline .ev').length"
    assert 0 < page.evaluate(count) <= 300
    assert f"row {BIG - 400}\n" not in terminal.inner_text()

    earlier = page.get_by_role("button", name="Load earlier events")
    earlier.click()
    expect(terminal).to_contain_text(f"row {BIG - 400}")  # the previous page, prepended
    text = terminal.inner_text()
    assert text.index(f"row {BIG - 400}") < text.index(f"row {BIG - 1}")
    for _ in range(8):  # well past the cap: the window stays bounded
        earlier.click()
        expect(earlier).to_be_enabled()
    assert page.evaluate(count) < 2500
    expect(terminal).to_contain_text(f"row {BIG - 2600}")
    latest = page.get_by_role("button", name=re.compile("Show latest events"))
    expect(latest).to_be_visible()
    latest.click()
    expect(terminal).to_contain_text(f"row {BIG - 1}")
    assert page.evaluate(count) <= 300

    box = page.locator("#in-command")  # still interactive
    box.focus()
    expect(box).to_be_focused()
    box.fill("echo after fifty thousand")
    box.press("Control+Enter")
    newest = page.locator("article.task[data-task-id]").last
    expect(newest.locator("pre.terminal")).to_contain_text("after fifty thousand", timeout=WAIT_MS)
    _no_page_errors(page)
