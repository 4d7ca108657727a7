"""WebSocket and SSE streams under hostile and slow clients, over real servers (issue 13).

Fuzz: malformed, oversized, binary, non-UTF-8 and unknown frames, protocol violations and bad
cursors each get a clear error frame / close code / 400, the connection or the server never
dies, and nothing is logged as a traceback. Slow readers (DESIGN §3.5, docs/streams.md): clients
that stop reading (a tiny SO_RCVBUF, raw sockets) while a task floods its output do not slow the
task or a normal subscriber; they are cut off with ``slow_consumer`` (WS close 4008, SSE
``event: error``) once ``STREAM_MAX_BUFFER_BYTES`` wait for them, resume from their last seq and
get the rest exactly once; one that never reads is dropped after ``STREAM_SEND_TIMEOUT_S``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sessions.demo import seed_demo_agents
from tests import procs
from tests.factories import make_token

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

MAX_BUFFER = 256 * 1024
SEND_TIMEOUT_S = 6.0
ENV: dict[str, Any] = {
    "STREAM_HEARTBEAT_S": 1,
    "STREAM_MAX_BUFFER_BYTES": MAX_BUFFER,
    "STREAM_SEND_TIMEOUT_S": SEND_TIMEOUT_S,
    "STREAM_MAX_FRAME_BYTES": 64 * 1024,
}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
OVERFLOW_LOG = "slow stream consumer disconnected"
LINE = "0123456789abcdef" * 4
FLOOD_LINES = 60_000  # 65 bytes each: ~3.9 MB of stdout, ~15 times the per-connection limit


@contextlib.contextmanager
def _server(kind: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, log = procs.free_port(), tmp_path / f"{kind}.log"
    if kind == "daphne":
        proc = procs.start_daphne(port, log, **ENV)
    elif hasattr(procs, "start_server"):  # runtime_project.serve --server uvicorn
        proc = procs.start_server("uvicorn", port, log, **ENV)
    else:
        argv = [sys.executable, "-m", "uvicorn", "runtime_project.asgi:application",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                "--lifespan", "on", "--ws", "websockets"]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=procs.ROOT, env=procs.child_env(**ENV),
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
        procs.wait_for_port(port, proc)
    try:
        yield port, log
    finally:
        procs.stop(proc)


@pytest.fixture
def token(transactional_db: Any) -> str:
    user = get_user_model().objects.create_user("fuzz", password="x")
    seed_demo_agents(owner=user)
    return make_token(user)


class RawWebSocket:
    """A WebSocket client on a plain socket: it reads only when told to (a real slow reader),
    and can send frames no library would (bad opcodes, RSV bits, unmasked, lying lengths)."""

    def __init__(self, port: int, path: str, token: str, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        self.buf, self.bytes_read = b"", 0
        while b"\r\n\r\n" not in self.buf:
            self._fill(time.monotonic() + 30)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:200]

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk
        self.bytes_read += len(chunk)

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self, timeout: float = 30) -> tuple[int, bytes]:
        """The next ``(opcode, payload)`` (pings are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            b0, b1 = self._take(2, deadline)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8, deadline))[0]
            assert not b1 & 0x80, "the server masked a frame"
            payload = self._take(n, deadline)
            if b0 & 0x0F != 9:
                return b0 & 0x0F, payload

    def send_frame(self, opcode: int, payload: bytes, *, rsv: int = 0, mask: bool = True,
                   length: int | None = None) -> None:  # fmt: skip
        n = len(payload) if length is None else length
        head = bytes([0x80 | rsv << 4 | opcode])
        bit = 0x80 if mask else 0
        if n < 126:
            head += bytes([bit | n])
        elif n < 65536:
            head += bytes([bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([bit | 127]) + struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            payload = key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + payload)

    def close_code(self, timeout: float = 15) -> int | None:
        """Read to the close frame; its code (``None`` if the connection just ended)."""
        try:
            while True:
                opcode, payload = self.frame(timeout)
                if opcode == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (EOFError, ConnectionError):
            return None

    def tcp_state(self) -> int:
        """Linux TCP_INFO tcpi_state: 1 established, 7 closed (reset), 8 close-wait (FIN)."""
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


class RawSse:
    """An SSE client on a plain socket (HTTP/1.1, chunked or not), reading only when told to."""

    def __init__(self, port: int, path: str, token: str, rcvbuf: int | None = None,
                 last_event_id: int | None = None) -> None:  # fmt: skip
        self.ws = RawWebSocket.__new__(RawWebSocket)  # reuse its buffered reader
        self.ws.sock = socket.socket()
        if rcvbuf:
            self.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.ws.sock.connect(("127.0.0.1", port))
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
        self.ws.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: text/event-stream\r\n{extra}\r\n".encode()
        )
        self.ws.buf, self.ws.bytes_read = b"", 0
        while b"\r\n\r\n" not in self.ws.buf:
            self.ws._fill(time.monotonic() + 30)
        head, _, self.ws.buf = self.ws.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:300]
        self.chunked = b"transfer-encoding: chunked" in head.lower()
        self.text = ""

    def _body(self, deadline: float) -> bool:
        """Append more body to ``text``; False at the end of the response."""
        ws = self.ws
        if not self.chunked:
            try:
                ws._fill(deadline)
            except EOFError:
                return False
            self.text += ws.buf.decode()
            ws.buf = b""
            return True
        while b"\r\n" not in ws.buf:
            ws._fill(deadline)
        size_line, _, ws.buf = ws.buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        data = ws._take(size + 2, deadline)[:size]
        self.text += data.decode()
        return size > 0

    def messages(self, timeout: float = 30) -> Iterator[dict[str, Any]]:
        """``{"id", "event", "data"}`` per SSE message until the response ends."""
        deadline = time.monotonic() + timeout
        while True:
            while "\n\n" in self.text:
                block, _, self.text = self.text.partition("\n\n")
                fields: dict[str, Any] = {}
                for line in block.split("\n"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                    yield {"event": "message", **fields}
            if not self._body(deadline):
                return


def _post(port: int, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def _get(port: int, token: str, path: str, **params: Any) -> httpx.Response:
    # params=None: an empty dict would make httpx drop the query string already in ``path``
    return httpx.get(f"http://127.0.0.1:{port}{path}", params=params or None, timeout=60,
                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def _task_events(port: int, token: str, task_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = _get(port, token, f"/api/v1/tasks/{task_id}/events", limit=1000,
                    after=events[-1]["seq"] if events else 0).json()["events"]  # fmt: skip
        events += page
        if len(page) < 1000:
            return events


def _log_gap(log: Path, first: str, then: str) -> float:
    """Seconds between the first log line containing ``first`` and the first with ``then``."""
    stamps = {}
    for line in log.read_text(errors="replace").splitlines():
        for text in (first, then):
            if text in line and text not in stamps:
                stamps[text] = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return (stamps[then] - stamps[first]).total_seconds()


def _wait_log(log: Path, text: str, count: int, timeout: float) -> float:
    """Seconds until ``text`` occurs ``count`` times in ``log`` (fails after ``timeout``)."""
    started = time.monotonic()
    while log.read_text(errors="replace").count(text) < count:
        assert time.monotonic() - started < timeout, f"{text!r} not logged {count} times"
        time.sleep(0.05)
    return time.monotonic() - started


# ------------------------------------------------------------------------------ fuzz


def _alive(ws: Any) -> None:
    """The connection still answers: a ping gets its pong (other frames may come first)."""
    ws.send(json.dumps({"type": "ping", "request_id": "alive"}))
    while True:
        frame = json.loads(ws.recv(timeout=20))
        if frame.get("type") == "pong" and frame.get("request_id") == "alive":
            return
        assert frame.get("error", {}).get("code") != "internal_error", frame


def _random_frames(rng: random.Random, n: int) -> Iterator[dict[str, Any]]:
    odd: list[Any] = [None, 0, -1, 2**70, 1.5, "", "x" * 3000, [], [1, [2]], {}, {"a": {}},
                      "../../etc/passwd", "\x00", "💥", True, "00000000-0000-0000-0000-000000000000"]  # fmt: skip
    types = ["task.cancel", "ping", "no.such", "debug.continue", "task.created", *odd]
    for _ in range(n):
        frame = {"type": rng.choice(types)}
        for key in rng.sample(["request_id", "task_id", "input", "config", "task_type",
                               "multitask_strategy", "idempotency_key", "extra"], 3):  # fmt: skip
            frame[key] = rng.choice(odd)
        yield frame
    for bad in ("input", "config", "task_type", "multitask_strategy"):  # task.create, refused
        frame = {"type": "task.create", bad: rng.choice([[], "x", 7, [{"deep": [[]]}]])}
        frame["idempotency_key"] = rng.choice(odd)
        frame["request_id"] = rng.choice(odd)
        yield frame


def test_malformed_frames_and_cursors_get_clear_errors(token: str, tmp_path: Path) -> None:
    with _server("daphne", tmp_path) as (port, log):
        session = _post(port, token, "/api/v1/sessions", {"agent": "shell"})
        path = f"/ws/sessions/{session['id']}/"
        url, auth = f"ws://127.0.0.1:{port}{path}", {"Authorization": f"Bearer {token}"}

        # Frames the app refuses but survives: an error frame each, the socket stays open.
        with connect(url, additional_headers=auth, max_size=None) as ws:
            assert json.loads(ws.recv(timeout=20))["type"] == "session.created"
            for frame in _random_frames(random.Random(13), 150):
                ws.send(json.dumps(frame))
            _alive(ws)
            ws.send(json.dumps({"type": "ping", "request_id": "bin"}).encode())  # binary JSON
            _alive(ws)

        # Frames that end the connection with a documented code and an error frame first.
        closing: list[tuple[str | bytes, int, str]] = [
            ("not json", 4400, "bad_frame"),
            ("[1, 2]", 4400, "bad_frame"),
            ('"a string"', 4400, "bad_frame"),
            ("[" * 100_000 + "]" * 100_000, 4413, "frame_too_large"),
            ("[" * 30_000, 4400, "bad_frame"),  # nested too deep for the parser
            (b"\xff\xfe not utf-8", 4400, "bad_frame"),  # a binary frame is decoded as UTF-8
            (json.dumps({"type": "ping", "pad": "x" * 70_000}), 4413, "frame_too_large"),
        ]
        for payload, code, error in closing:
            with connect(url, additional_headers=auth, max_size=None) as ws:
                assert json.loads(ws.recv(timeout=20))["type"] == "session.created"
                ws.send(payload)
                frame = json.loads(ws.recv(timeout=20))
                while "seq" in frame or frame["type"] == "stream.heartbeat":
                    frame = json.loads(ws.recv(timeout=20))
                assert frame["type"] == "error" and frame["error"]["code"] == error, frame
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
            assert ws.close_code == code, (payload[:20], ws.close_code)

        # Protocol violations are the server library's: a close code (or a dropped socket).
        violations: list[tuple[dict[str, Any], set[int | None]]] = [
            ({"opcode": 1, "payload": b"\xff\xfe"}, {1007}),  # text frame, invalid UTF-8
            ({"opcode": 3, "payload": b"{}"}, {1002}),  # reserved opcode
            ({"opcode": 1, "payload": b"{}", "rsv": 4}, {1002}),  # RSV1 without an extension
            ({"opcode": 1, "payload": b"{}", "mask": False}, {1002}),  # clients must mask
            ({"opcode": 1, "payload": b"", "length": 2**40}, {1009}),  # announces 1 TiB
        ]
        for kwargs, codes in violations:
            raw = RawWebSocket(port, path, token)
            raw.frame()  # session.created
            raw.send_frame(**kwargs)
            closed = raw.close_code()
            assert closed in codes | {None}, (kwargs, closed)
            raw.sock.close()

        # Bad cursors: WS closes 4400 with invalid_input, SSE answers 400; the maximum is fine.
        stream = f"/api/v1/sessions/{session['id']}/events/stream"
        for after in (
            "-1",
            "abc",
            "1e3",
            "%2B1",
            "0x10",
            "99999999999999999999999",
            str(2**63),
            "%FF%FE",
            "%EF%BC%91",
        ):  # fmt: skip  (the last: fullwidth 1)
            with connect(f"{url}?after={after}", additional_headers=auth) as ws:
                frame = json.loads(ws.recv(timeout=20))
                assert frame["error"]["code"] == "invalid_input", (after, frame)
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
            assert ws.close_code == 4400
            response = _get(port, token, stream + f"?after={after}")
            assert response.status_code == 400, (after, response.text)
            assert response.json()["error"]["code"] == "invalid_input"
        for header in ("-1", "abc", str(2**64)):
            response = httpx.get(f"http://127.0.0.1:{port}{stream}", timeout=30, headers={
                "Authorization": f"Bearer {token}", "Last-Event-ID": header})  # fmt: skip
            assert response.status_code == 400, (header, response.text)
        with connect(f"{url}?after={2**63 - 1}", additional_headers=auth) as ws:
            frame = json.loads(ws.recv(timeout=20))  # nothing after it: a heartbeat
            assert frame["type"] == "stream.heartbeat", frame
        RawSse(port, f"{stream}?after={2**63 - 1}", token).ws.sock.close()  # 200, streaming

        # The server is still healthy, and nothing above was a crash.
        with connect(url, additional_headers=auth) as ws:
            assert json.loads(ws.recv(timeout=20))["type"] == "session.created"
            _alive(ws)
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]


# ------------------------------------------------------------------------------ slow readers


def _normal_subscriber(port: int, token: str, task: dict[str, Any],
                       out: list[dict[str, Any]]) -> None:  # fmt: skip
    """A subscriber that keeps up: the task's stream read as fast as the socket delivers it.

    Per read (up to 1 MiB) only the frame headers are walked; the JSON is parsed at the end. A
    per-frame reader (a JSON parse per frame in a client library's thread, beside the test's
    other readers on a busy CI machine) fell 256 KiB behind a 4 MB flood and was cut off
    itself. The server's close frame is answered at once: daphne resets a connection whose
    close is not answered within a second, and a reset discards what the kernel still held.
    """
    raw = RawWebSocket(port, f"/ws/tasks/{task['id']}/", token)
    data, pos = bytearray(raw.buf), 0
    texts: list[tuple[int, int]] = []  # (start, end) of each text frame's payload in data
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            while len(data) - pos >= 2:  # walk the complete frames received so far
                b0, b1 = data[pos], data[pos + 1]
                n, head = b1 & 0x7F, 2
                if n == 126:
                    n, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
                elif n == 127:
                    n, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
                if len(data) - pos < head + n:
                    break
                if b0 & 0x0F == 8:
                    raw.send_frame(8, struct.pack("!H", 1000))
                    return
                if b0 & 0x0F == 1:
                    texts.append((pos + head, pos + head + n))
                pos += head + n
            raw.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = raw.sock.recv(1 << 20)
            if not chunk:
                return
            data += chunk
    finally:
        raw.sock.close()
        for begin, stop in texts:
            frame = json.loads(bytes(data[begin:stop]))
            if "seq" in frame:
                out.append(frame)


def _ws_until_close(raw: RawWebSocket, timeout: float = 30) -> tuple[list[dict[str, Any]], Any]:
    """Events read until the close frame, and the close code (or the last control frame)."""
    events: list[dict[str, Any]] = []
    final = None
    while True:
        opcode, payload = raw.frame(timeout)
        if opcode == 8:
            return events, (final, struct.unpack("!H", payload[:2])[0])
        frame = json.loads(payload)
        if "seq" in frame:
            events.append(frame)
        elif frame["type"] != "stream.heartbeat":
            final = frame


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
def test_slow_readers_are_cut_off_and_resume_exactly_once(
    kind: str, token: str, tmp_path: Path
) -> None:
    with _server(kind, tmp_path) as (port, log):
        session = _post(port, token, "/api/v1/sessions", {"agent": "shell"})
        sid = session["id"]
        slow = RawWebSocket(port, f"/ws/sessions/{sid}/?after=0", token, rcvbuf=4096)
        never = RawWebSocket(port, f"/ws/sessions/{sid}/?after=0", token, rcvbuf=4096)
        sse = RawSse(port, f"/api/v1/sessions/{sid}/events/stream", token, rcvbuf=4096)
        flood = f"sleep 1; yes {LINE} | head -n {FLOOD_LINES}; echo done"
        task = _post(port, token, f"/api/v1/sessions/{sid}/tasks", {"input": {"command": flood}})
        started = time.monotonic()
        normal: list[dict[str, Any]] = []
        reader_errors: list[str] = []

        def read_normal() -> None:
            try:
                _normal_subscriber(port, token, task, normal)
            except Exception as exc:  # reported by the assertion below
                reader_errors.append(repr(exc))

        reader = threading.Thread(target=read_normal)
        reader.start()

        # The three stalled clients are cut off once 256 KiB wait for each of them.
        to_overflow = _wait_log(log, OVERFLOW_LOG, 3, timeout=60)
        cut_off_at = time.monotonic()
        # (c) the slow clients read what reached them, then the reason: WS close 4008, SSE
        # event: error (both at once: each must keep reading to get its final frame).
        sse_first: list[dict[str, Any]] = []
        sse_final: list[dict[str, Any]] = []

        def read_sse() -> None:
            try:
                for message in sse.messages():
                    if message["event"] == "error":
                        sse_final.append(message["data"])
                    elif "id" in message:
                        sse_first.append(message["data"])
            except Exception as exc:  # reported by the assertion below
                at = time.monotonic() - cut_off_at
                sse_final.append({"error": {"code": repr(exc)}, "at": at})

        sse_reader = threading.Thread(target=read_sse)
        sse_reader.start()
        first, (final, code) = _ws_until_close(slow)
        assert code == 4008, (kind, code, final)
        assert final["error"]["code"] == "slow_consumer", final
        assert final["last_seq"] == first[-1]["seq"]
        sse_reader.join(timeout=60)
        assert sse_final and sse_final[0]["error"]["code"] == "slow_consumer", (
            sse_final,
            len(sse_first),
            sse.ws.bytes_read,
            time.monotonic(),
        )
        assert sse_final[0]["last_seq"] == sse_first[-1]["seq"]

        # (a) the task and (b) the normal subscriber were not held up meanwhile.
        reader.join(timeout=60)
        assert not reader.is_alive(), "the normal subscriber did not get the whole task"
        assert not reader_errors, reader_errors
        cut = log.read_text(errors="replace").count(OVERFLOW_LOG)
        assert cut == 3, f"{cut} clients were cut off as slow, not the 3 stalled ones"
        task_s = time.monotonic() - started
        row = _get(port, token, f"/api/v1/tasks/{task['id']}").json()
        run_s = (datetime.fromisoformat(row["finished_at"])
                 - datetime.fromisoformat(row["started_at"])).total_seconds()  # fmt: skip
        assert run_s < 45, f"the flood took {run_s:.1f}s: held up by the slow readers?"
        expected = _task_events(port, token, task["id"])
        assert expected[-1]["data"]["status"] == "succeeded"
        assert [e for e in normal if e["task_id"] == task["id"]] == expected
        stdout = "".join(e["data"]["text"] for e in expected if e["type"] == "process.stdout")
        assert stdout == f"{LINE}\n" * FLOOD_LINES + "done\n"
        total = sum(len(json.dumps(e)) for e in expected)
        # Cut off mid-task: what they read is what the server's limit (plus the kernel's socket
        # buffers, which Linux autotunes up to net.ipv4.tcp_wmem's max) let through.
        assert first[-1]["seq"] < expected[-1]["seq"], "the server kept everything for it"
        assert sse_first[-1]["seq"] < expected[-1]["seq"], "the server kept everything for it"

        # (d) both resume from their last seq and get the rest exactly once.
        resumed = RawWebSocket(port, f"/ws/tasks/{task['id']}/?after={first[-1]['seq']}", token)
        rest, (end, code) = _ws_until_close(resumed)
        assert (end["type"], code) == ("stream.end", 1000)
        got = [e for e in first if e["task_id"] == task["id"]] + rest
        assert got == expected, "lost, duplicated or reordered after resuming"
        last_id = sse_first[-1]["seq"]
        again = RawSse(port, f"/api/v1/tasks/{task['id']}/stream", token, last_event_id=last_id)
        sse_rest = [m["data"] for m in again.messages() if "id" in m]
        assert [e for e in sse_first if e["task_id"] == task["id"]] + sse_rest == expected

        # A client that never reads is dropped STREAM_SEND_TIMEOUT_S after its cut-off.
        while never.tcp_state() == 1:  # still established
            waited = time.monotonic() - cut_off_at
            assert waited < SEND_TIMEOUT_S + 10, f"{kind} kept a client that never reads"
            time.sleep(0.1)
        dropped_s = _log_gap(log, OVERFLOW_LOG, "dropping a stream connection")
        print(f"{kind}: task ran {run_s:.1f}s (all events at the normal subscriber after "
              f"{task_s:.1f}s), cut-off {to_overflow:.1f}s after the task was "
              f"created, never-reader dropped {dropped_s:.1f}s after; read before the cut-off: "
              f"WS {slow.bytes_read}, SSE {sse.ws.bytes_read} of ~{total} bytes")  # fmt: skip
        for client in (slow, never, resumed, sse.ws, again.ws):
            client.sock.close()
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
