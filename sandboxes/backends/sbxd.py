"""sbxd: the supervisor that runs inside one sandbox for its whole life (stdlib only).

The ``local`` backend starts this file once per sandbox, inside the sandbox (bubblewrap, or
the weaker tiers' wrappers), with a listening unix socket inherited on fd ``SBXD_FD``; the
``docker`` backend runs it as a container's command, listening on ``SBXD_LISTEN`` (a path in
a bind-mounted directory). Every
later exec is a request on that socket, so an exec costs about a plain ``fork``+``exec``
instead of a new bubblewrap (research note ``sandboxes.md`` §0 row 14, the same idea as E2B's
``envd`` and OpenHands' action-execution server). The socket lives in the server's private run
directory, which is not visible inside the sandbox; sandboxed code cannot connect to it.

Protocol: frames ``type (1 byte) | length (4 bytes, big endian) | payload`` both ways.

* client → sbxd: ``J`` one JSON request; ``I`` stdin bytes; ``C`` close stdin.
* sbxd → client: ``J`` JSON replies and events, ``O`` stdout bytes, ``E`` stderr bytes.

Requests (one per connection, except ``signal``/``terminate`` sent on a ``run``/``attach``
connection):

* ``{"op": "ping"}`` → ``{"ok": true, "pid", "idle_s", "processes"}``
* ``{"op": "run", "argv", "cwd", "env", "stdin": bool, "background": bool, "rlimits": {...}}``
  → ``{"ok": true, "id"}``, then output frames, then ``{"event": "exit", "code"}`` where
  ``code`` is the exit status or ``-N`` for signal N. A foreground run's process tree is killed
  when its connection closes early (the client went away). A background run keeps going;
  its output (the last ``SBXD_RETAIN_BYTES``) is retained for ``attach``.
* ``{"op": "attach", "id"}`` → ``{"ok": true}``, the retained output, live output, exit.
* ``{"op": "list"}`` → ``{"ok": true, "processes": [...]}``
* ``{"op": "write", "id", "data" (base64), "eof": bool}``, ``{"op": "kill", "id", "sig"}``
* ``{"op": "signal", "sig"}`` / ``{"op": "terminate", "grace_s"}`` on a run/attach connection
* ``{"op": "configure", "idle_s"}``: a new idle timeout (``null``: never stop when idle).
* ``{"op": "shutdown"}``: kill every process, then exit.

Process trees: each run starts in its own session; ``SBXD_PROCESS=<id>`` in its environment
marks its descendants, so a kill reaches grandchildren that called ``setsid()`` (unless they
also scrubbed their environment: stopping the sandbox still gets them). sbxd is a child
subreaper, so orphans are re-parented to it and reaped here. When a foreground command exits,
whatever it left running is killed once its output is drained (at most ``DRAIN_S`` later).

Idle: with ``SBXD_IDLE_S`` set, sbxd exits after that many seconds without a request (a
``ping`` does not count), an attached client or a running foreground process (the session's
idle policy ``stop``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import ctypes
import errno
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time

HEADER = struct.Struct("!cI")
MAX_REQUEST = 16 * 1024 * 1024
CHUNK = 64 * 1024
RETAIN = int(os.environ.get("SBXD_RETAIN_BYTES", str(1024 * 1024)))
FG_HIGH_WATER = 1024 * 1024  # unsent bytes of a foreground run above which its pipes pause
SEND_BATCH = 256 * 1024
DRAIN_S = 0.5
CLOSE_WAIT_S = 10.0  # how long a finished run's connection waits for the client to close it
KEEP_EXITED = 64
RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
}


def _now() -> float:
    return time.monotonic()


class Proc:
    """One command started by a ``run`` request."""

    def __init__(self, pid_: str, argv: list[str], background: bool) -> None:
        self.id = pid_
        self.argv = argv
        self.background = background
        self.pid = 0
        self.started_at = time.time()
        self.stdin_fd: int | None = None
        self.pipes: dict[int, bytes] = {}  # fd → b"O" / b"E"
        self.paused = False
        self.chunks: collections.deque[list] = collections.deque()  # [offset, kind, bytearray]
        self.start = 0  # offset of the first retained byte
        self.end = 0  # offset after the last byte (exit record included)
        self.status: int | None = None  # -N for signal N
        self.main_exited_at: float | None = None
        self.finished = False
        self.conns: set[Conn] = set()
        self.term_deadline: float | None = None

    def append(self, kind: bytes, data: bytes) -> None:
        last = self.chunks[-1] if self.chunks else None
        if last is not None and last[1] == kind and len(last[2]) < 16 * 1024 and kind != b"X":
            last[2] += data
        else:
            self.chunks.append([self.end, kind, bytearray(data)])
        self.end += len(data) if kind != b"X" else 1

    def trim(self) -> None:
        """Forget output nobody needs: consumed output of a foreground run, output beyond
        ``RETAIN`` of a background one."""
        keep_from = min((c.offset for c in self.conns), default=self.end)
        if self.background:
            keep_from = min(keep_from, self.end - RETAIN)
        while self.chunks and self.chunks[0][1] != b"X":
            first = self.chunks[0]
            if first[0] + len(first[2]) > keep_from:
                break
            self.chunks.popleft()
            self.start = first[0] + len(first[2])
        if self.background:  # drop whole chunks only: slow clients get a gap marker
            while self.chunks and self.end - self.start > RETAIN and self.chunks[0][1] != b"X":
                first = self.chunks.popleft()
                self.start = first[0] + len(first[2])

    def unsent(self) -> int:
        return self.end - min((c.offset for c in self.conns), default=self.end)

    def info(self) -> dict:
        return {
            "id": self.id,
            "argv": self.argv,
            "started_at": self.started_at,
            "running": not self.finished,
            "exit_code": self.status if self.finished else None,
            "output_bytes": self.end - (1 if self.finished else 0),
            "background": self.background,
        }


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.proc: Proc | None = None
        self.offset = 0
        self.kill_on_close = False
        self.closing = False
        self.sent_all = False  # the exit frame is out; only the client's close is awaited
        self.sent_all_at = 0.0


class Supervisor:
    def __init__(self, listen_fd: int, idle_s: float | None) -> None:
        self.listener = socket.socket(fileno=listen_fd)
        self.listener.setblocking(False)
        os.set_inheritable(listen_fd, False)
        self.idle_s = idle_s
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        for s in (self.wake_r, self.wake_w):
            os.set_inheritable(s.fileno(), False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self.shutdown())
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}
        self.counter = 0
        self.last_active = _now()
        self.stopping = False
        self.own_pidns = os.environ.get("SBXD_PIDNS") == "1"
        self.egress: socket.socket | None = None
        if os.environ.get("SBXD_EGRESS_FD"):
            # Egress allow-list: a proxy port on our loopback whose connections we hand to the
            # server (SCM_RIGHTS), which forwards only to allowed hosts (see _egress.py).
            self.egress = socket.socket(fileno=int(os.environ["SBXD_EGRESS_FD"]))
            self.egress.settimeout(5)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", int(os.environ.get("SBXD_EGRESS_PORT", "3128"))))
            listener.listen(64)
            listener.setblocking(False)
            for s in (self.egress, listener):
                os.set_inheritable(s.fileno(), False)
            self.sel.register(listener, selectors.EVENT_READ, ("egress", listener))

    # ------------------------------------------------------------------ loop

    def serve(self) -> None:
        while not (self.stopping and not any(not p.finished for p in self.procs.values())):
            timeout = self._next_timeout()
            for key, mask in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "egress":
                    self._egress(obj)
                elif kind == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self.wake_r.recv(4096)
                    self._reap()
                elif kind == "pipe":
                    self._read_pipe(obj, key.fd)
                elif kind == "conn":
                    if mask & selectors.EVENT_READ:
                        self._read_conn(obj)
                    if mask & selectors.EVENT_WRITE and not obj.closing:
                        self._flush(obj)
            self._tick()

    def _egress(self, listener: socket.socket) -> None:
        """Hand one proxy connection to the server; it answers the client itself."""
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):  # server gone: the client sees a close
            assert self.egress is not None
            socket.send_fds(self.egress, [b"c"], [conn.fileno()])

    def _next_timeout(self) -> float | None:
        deadlines = []
        for p in self.procs.values():
            if p.main_exited_at is not None and not p.finished:
                deadlines.append(p.main_exited_at + DRAIN_S)
            if p.term_deadline is not None:
                deadlines.append(p.term_deadline)
        for key in self.sel.get_map().values():
            if key.data[0] == "conn" and key.data[1].sent_all:
                deadlines.append(key.data[1].sent_all_at + CLOSE_WAIT_S)
        if self.idle_s is not None:
            deadlines.append(self.last_active + self.idle_s)
        if self.stopping:
            deadlines.append(_now() + 0.05)
        return max(0.0, min(deadlines) - _now()) if deadlines else None

    def _tick(self) -> None:
        now = _now()
        for p in list(self.procs.values()):
            if p.term_deadline is not None and now >= p.term_deadline:
                p.term_deadline = None
                self._kill_tree(p, signal.SIGKILL)
            if p.main_exited_at is not None and not p.finished:
                if not p.pipes:
                    self._finish(p)
                elif now >= p.main_exited_at + DRAIN_S:
                    self._kill_tree(p, signal.SIGKILL)  # leftovers holding the pipes
                    for fd in list(p.pipes):
                        self._close_pipe(p, fd)
                    self._finish(p)
        conns = [key.data[1] for key in self.sel.get_map().values() if key.data[0] == "conn"]
        for conn in conns:
            if conn.sent_all and now - conn.sent_all_at > CLOSE_WAIT_S:
                self._close_conn(conn)  # a client that never closes must not keep us busy
        attached = any(c.proc is not None and not c.closing for c in conns)
        busy = attached or any(not p.finished and not p.background for p in self.procs.values())
        if busy:
            self.last_active = now
        elif self.idle_s is not None and now - self.last_active >= self.idle_s:
            self.shutdown()

    def shutdown(self) -> None:
        self.stopping = True
        for p in self.procs.values():
            if not p.finished:
                self._kill_tree(p, signal.SIGKILL)
        self._kill_all()

    # ------------------------------------------------------------------ connections

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            sock, _ = self.listener.accept()
            os.set_inheritable(sock.fileno(), False)
            sock.setblocking(False)
            conn = Conn(sock)
            self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _read_conn(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_conn(conn)
            return
        conn.rbuf += data
        while len(conn.rbuf) >= HEADER.size:
            kind, length = HEADER.unpack_from(conn.rbuf)
            if length > MAX_REQUEST:
                self._close_conn(conn)
                return
            if len(conn.rbuf) < HEADER.size + length:
                break
            payload = bytes(conn.rbuf[HEADER.size : HEADER.size + length])
            del conn.rbuf[: HEADER.size + length]
            self._frame(conn, kind, payload)
            if conn.closing:
                return

    def _frame(self, conn: Conn, kind: bytes, payload: bytes) -> None:
        proc = conn.proc
        if conn.sent_all:
            return  # late stdin of a finished run: read and dropped until the client closes
        if kind == b"I" and proc is not None and proc.stdin_fd is not None:
            self._write_stdin(proc, payload, eof=False)
        elif kind == b"C" and proc is not None:
            self._write_stdin(proc, b"", eof=True)
        elif kind == b"J":
            try:
                request = json.loads(payload)
                reply = self._request(conn, request)
            except Exception as exc:  # every bad request gets an answer
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            if reply is not None:
                self._send_json(conn, reply)
                if not reply.get("ok", True) and conn.proc is None:
                    conn.closing = True
                    self._flush(conn)

    def _request(self, conn: Conn, req: dict) -> dict | None:
        op = req.get("op")
        if op != "ping":  # a liveness check is not use: it must not keep an idle sandbox up
            self.last_active = _now()
        if op == "ping":
            running = sum(1 for p in self.procs.values() if not p.finished)
            return {"ok": True, "pid": os.getpid(), "idle_s": _now() - self.last_active,
                    "processes": running}  # fmt: skip
        if op == "run":
            new = self._spawn(req)
            self._send_json(conn, {"ok": True, "id": new.id})
            self._attach(conn, new, kill_on_close=not new.background)
            return None
        proc: Proc | None
        if op == "attach":
            proc = self.procs.get(str(req.get("id")))
            if proc is None:
                return {"ok": False, "error": "no such process", "code": "not_found"}
            self._send_json(conn, {"ok": True, "id": proc.id})
            self._attach(conn, proc, kill_on_close=False, offset=proc.start)
            return None
        if op == "list":
            return {"ok": True, "processes": [p.info() for p in self.procs.values()]}
        if op in ("write", "kill"):
            proc = self.procs.get(str(req.get("id")))
            if proc is None or proc.finished:
                return {"ok": False, "error": "no such running process", "code": "not_found"}
            if op == "write":
                if proc.stdin_fd is None:
                    return {"ok": False, "error": "stdin is closed", "code": "stdin_closed"}
                self._write_stdin(proc, base64.b64decode(req.get("data", "")), bool(req.get("eof")))
            else:
                self._kill_tree(proc, int(req.get("sig", signal.SIGKILL)))
            return {"ok": True}
        if op in ("signal", "terminate") and conn.proc is not None:
            proc = conn.proc
            if op == "signal":
                self._kill_tree(proc, int(req.get("sig", signal.SIGTERM)))
            elif not proc.finished:
                self._kill_tree(proc, signal.SIGTERM)
                proc.term_deadline = _now() + max(0.0, float(req.get("grace_s", 5.0)))
            return None
        if op == "configure":  # the session's idle policy changed
            idle = req.get("idle_s")
            self.idle_s = float(idle) if idle is not None else None
            self.last_active = _now()
            return {"ok": True}
        if op == "shutdown":
            self.shutdown()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}", "code": "bad_request"}

    def _attach(self, conn: Conn, proc: Proc, *, kill_on_close: bool, offset: int = 0) -> None:
        conn.proc = proc
        conn.offset = max(offset, proc.start)
        conn.kill_on_close = kill_on_close
        proc.conns.add(conn)
        self._pump(proc)

    def _close_conn(self, conn: Conn) -> None:
        if conn.closing and conn.sock.fileno() == -1:
            return
        conn.closing = True
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()
        proc = conn.proc
        if proc is not None:
            proc.conns.discard(conn)
            if conn.kill_on_close and not proc.finished:
                self._kill_tree(proc, signal.SIGKILL)
            self._resume(proc)
            proc.trim()
            if proc.finished and not proc.background and not proc.conns:
                self.procs.pop(proc.id, None)

    def _send_json(self, conn: Conn, obj: dict) -> None:
        data = json.dumps(obj).encode()
        conn.wbuf += HEADER.pack(b"J", len(data)) + data
        self._flush(conn)

    def _pump(self, proc: Proc) -> None:
        """Move retained output into each attached connection's buffer, then send; repeat
        while the socket takes everything (a refill the nested ``_pump_later`` skipped would
        otherwise leave paused pipes and an idle socket: a stalled command)."""
        for conn in list(proc.conns):
            while True:
                filled = self._fill(conn, proc)
                self._flush(conn)
                if not filled or conn.wbuf or conn.closing:
                    break  # all sent, or the socket is full (EVENT_WRITE resumes it)
        proc.trim()
        if not proc.background:
            if proc.paused and proc.unsent() < FG_HIGH_WATER // 4:
                self._resume(proc)
            elif not proc.paused and proc.unsent() > FG_HIGH_WATER:
                proc.paused = True
                for fd in proc.pipes:
                    self.sel.unregister(fd)

    def _fill(self, conn: Conn, proc: Proc) -> bool:
        """Frame retained output after ``conn.offset`` into ``conn.wbuf`` (up to
        ``SEND_BATCH``); returns whether anything was added."""
        if conn.offset < proc.start:  # a slow client of a background process lost output
            conn.offset = proc.start
        before = len(conn.wbuf)
        for offset, kind, data in list(proc.chunks):
            if len(conn.wbuf) >= SEND_BATCH:
                break
            if kind == b"X":
                if conn.offset == offset:
                    exit_frame = json.dumps({"event": "exit", "code": proc.status}).encode()
                    conn.wbuf += HEADER.pack(b"J", len(exit_frame)) + exit_frame
                    conn.offset = offset + 1
                continue
            if offset + len(data) <= conn.offset:
                continue
            piece = bytes(data[conn.offset - offset :])
            conn.wbuf += HEADER.pack(kind, len(piece)) + piece
            conn.offset = offset + len(data)
        return len(conn.wbuf) > before

    def _resume(self, proc: Proc) -> None:
        if proc.paused:
            proc.paused = False
            for fd in proc.pipes:
                self.sel.register(fd, selectors.EVENT_READ, ("pipe", proc))

    def _flush(self, conn: Conn) -> None:
        if conn.sock.fileno() == -1:
            return
        while conn.wbuf:
            try:
                sent = conn.sock.send(conn.wbuf[:SEND_BATCH])
            except BlockingIOError:
                break
            except OSError:
                self._close_conn(conn)
                return
            del conn.wbuf[:sent]
        done = conn.proc is not None and conn.offset >= conn.proc.end and conn.proc.finished
        if not conn.wbuf and conn.closing:
            self._close_conn(conn)
            return
        if not conn.wbuf and done and not conn.sent_all:
            # Half-close and let the client close: closing with its stdin frames still unread
            # would reset the connection (ECONNRESET on its side, or EPIPE on a late stdin
            # write), and the client's stream would drop the exit frame it had not read yet.
            conn.sent_all, conn.sent_all_at = True, _now()
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.wbuf else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(conn.sock, events, ("conn", conn))
        if not conn.wbuf and conn.proc is not None and conn.offset < conn.proc.end:
            self._pump_later(conn.proc)

    def _pump_later(self, proc: Proc) -> None:
        # Refill from the log when a connection's buffer drained (one level of recursion).
        if not getattr(proc, "_pumping", False):
            proc._pumping = True  # type: ignore[attr-defined]
            try:
                self._pump(proc)
            finally:
                proc._pumping = False  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ processes

    def _spawn(self, req: dict) -> Proc:
        argv = [str(a) for a in req["argv"]]
        if not argv:
            raise ValueError("empty argv")
        self.counter += 1
        proc = Proc(f"p{self.counter}", argv, bool(req.get("background")))
        env = {str(k): str(v) for k, v in dict(req.get("env") or {}).items()}
        env["SBXD_PROCESS"] = proc.id
        cwd = str(req.get("cwd") or ".")
        rlimits = {RLIMITS[k]: int(v) for k, v in dict(req.get("rlimits") or {}).items()}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if req.get("stdin") or proc.background else (None, None)
        exec_r, exec_w = os.pipe()  # CLOEXEC: closes on a successful exec
        pid = os.fork()
        if pid == 0:  # child: no Python-level cleanup may run here
            try:
                os.setsid()
                os.close(exec_r)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(in_r if in_r is not None else null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for res, value in rlimits.items():
                    _setrlimit(res, value)
                # OOM: the kernel should pick the command, not sbxd
                with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
                    f.write("500")
                signal.set_wakeup_fd(-1)
                # Python ignores SIGPIPE and SIGXFSZ; commands expect the defaults (a file-size
                # limit must kill with SIGXFSZ, as subprocess's restore_signals does).
                for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)  # noqa: S606 - argv, no shell
            except BaseException as exc:
                code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
                with contextlib.suppress(OSError):
                    os.write(exec_w, f"{code}:{exc}".encode()[:1000])
            os._exit(127)
        os.close(exec_w)
        for fd in (out_w, err_w, in_r):
            if fd is not None:
                os.close(fd)
        failure = b""
        while chunk := _read_all(exec_r):
            failure += chunk
        os.close(exec_r)
        proc.pid = pid
        self.by_pid[pid] = proc
        self.procs[proc.id] = proc
        if failure:
            _, _, message = failure.decode(errors="replace").partition(":")
            proc.append(b"E", f"sbxd: {argv[0]}: {message}\n".encode())
        proc.stdin_fd = in_w
        if in_w is not None:
            os.set_blocking(in_w, False)
        for fd, kind in ((out_r, b"O"), (err_r, b"E")):
            os.set_blocking(fd, False)
            proc.pipes[fd] = kind
            self.sel.register(fd, selectors.EVENT_READ, ("pipe", proc))
        self._forget_old()
        return proc

    def _forget_old(self) -> None:
        done = [p for p in self.procs.values() if p.finished and p.background and not p.conns]
        for p in done[: max(0, len(done) - KEEP_EXITED)]:
            self.procs.pop(p.id, None)

    def _read_pipe(self, proc: Proc, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(proc, fd)
            if proc.main_exited_at is not None and not proc.pipes:
                self._finish(proc)
            return
        proc.append(proc.pipes[fd], data)
        self._pump(proc)

    def _close_pipe(self, proc: Proc, fd: int) -> None:
        if not proc.paused:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)
        proc.pipes.pop(fd, None)
        os.close(fd)

    def _write_stdin(self, proc: Proc, data: bytes, eof: bool) -> None:
        fd = proc.stdin_fd
        if fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    # A full pipe: wait briefly for the reader (stdin writes are small).
                    selectors.DefaultSelector().select(0.05)
        except OSError:
            eof = True  # the reader is gone
        if eof:
            os.close(fd)
            proc.stdin_fd = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is not None:
                proc.status = os.waitstatus_to_exitcode(status)
                proc.main_exited_at = _now()
                if proc.stdin_fd is not None:
                    os.close(proc.stdin_fd)
                    proc.stdin_fd = None
                if not proc.pipes:
                    self._finish(proc)

    def _finish(self, proc: Proc) -> None:
        if proc.finished:
            return
        proc.finished = True
        proc.term_deadline = None
        if not proc.background:
            self._kill_tree(proc, signal.SIGKILL)  # whatever the command left running
        proc.append(b"X", b"")
        self._pump(proc)
        if not proc.conns and not proc.background:
            self.procs.pop(proc.id, None)

    def _kill_tree(self, proc: Proc, sig: int) -> None:
        if not proc.finished:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, sig)
        marker = f"SBXD_PROCESS={proc.id}\0".encode()
        for pid in _marked(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        self._reap()

    def _kill_all(self) -> None:
        """Every process of the sandbox but sbxd itself (shutdown). Only inside our own pid
        namespace (``SBXD_PIDNS=1``): elsewhere ``kill(-1)`` would reach processes of the
        same uid outside the sandbox (other sandboxes, or the server itself when unisolated),
        so there each run's tree is killed through its session and marker only."""
        if not self.own_pidns:
            return
        me = os.getpid()
        for _ in range(3):
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)  # all processes we may signal, except ourselves
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) not in (me, 1):
                    with contextlib.suppress(OSError):
                        os.kill(int(name), signal.SIGKILL)
            self._reap()


def _marked(marker: bytes) -> list[int]:
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if marker in b"\0" + f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def _read_all(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except InterruptedError:
        return _read_all(fd)


def _setrlimit(res: int, value: int) -> None:
    _soft, hard = resource.getrlimit(res)
    hard_cap = hard if hard != resource.RLIM_INFINITY else value + 1
    if res == resource.RLIMIT_CPU:
        # soft sends SIGXCPU (reported as limit "cpu"); hard, a second later, SIGKILLs.
        resource.setrlimit(res, (min(value, hard_cap), min(value + 1, hard_cap)))
    else:
        resource.setrlimit(res, (min(value, hard_cap), min(value, hard_cap)))


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us, not to init
    idle = os.environ.get("SBXD_IDLE_S")
    listen_fd = int(os.environ.get("SBXD_FD", "3"))
    if os.environ.get("SBXD_LISTEN"):  # a container: nothing to inherit, a bind-mounted dir
        path = os.environ["SBXD_LISTEN"]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(128)
        listen_fd = listener.detach()
    sup = Supervisor(listen_fd, float(idle) if idle else None)
    for key in (
        "SBXD_FD", "SBXD_IDLE_S", "SBXD_RETAIN_BYTES", "SBXD_PIDNS", "SBXD_EGRESS_FD",
        "SBXD_EGRESS_PORT", "SBXD_LISTEN",
    ):  # fmt: skip
        os.environ.pop(key, None)
    sup.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
