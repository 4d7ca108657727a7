// The browser runtime (docs/browser-runtime.md): this page attaches to a session as its runtime
// over /ws/runtimes/ (protocol agent-runtime.runtime.v1, docs/remote-runtimes.md) and runs the
// session's `python` tasks in Pyodide, in a Web Worker (pyodide-worker.js) that keeps one
// interpreter for the page's lifetime. No build step, no framework: an ES module the browser
// loads as it is.
//
// For debugging and the tests, `window.browserRuntime` is the BrowserRuntime below;
// `await browserRuntime.runLocal({cells: [...]})` runs a task's input in the page's
// interpreter without the server and returns {events, frame}.

const FLUSH_MS = 20; // events are sent in batches, at most this long after they happen
const MAX_EVENTS_PER_FRAME = 1000; // runtimes.protocol.MAX_EVENTS_PER_FRAME
const MAX_COALESCED_TEXT = 64 * 1024; // stdout chunks merged into one event, up to this size
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15000;
const CLOSE_DISPLACED = 4409;
const CLOSE_THROTTLED = 4429;
// Closes that reconnecting cannot cure (runtimes.protocol): say why and stay down.
const PERMANENT_CLOSES = {
  4400: "the server refused a frame of this page",
  4401: "not signed in",
  4403: "you may not run this session's tasks",
  4404: "the session does not exist (or is not yours)",
};
const VIEW_TEXT_MAX = 100000; // characters of one output shown in the page
const VIEW_TASKS_MAX = 50;
const MAX_RUNS_KEPT = 200; // finished tasks remembered (to answer a repeated assignment)

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "browser-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function errorMessage(err) {
  return String(err && err.message ? err.message : err);
}

// -- Python in a worker -----------------------------------------------------------------------

class PythonWorker {
  constructor(config, onEvent) {
    this.config = config;
    this.onEvent = onEvent;
    this.pending = new Map();
    this.nextId = 1;
    // A cancel interrupts a running cell through this shared flag (Pyodide checks it between
    // bytecodes); it needs cross-origin isolation, which the page's headers ask for.
    this.interruptBuffer =
      globalThis.crossOriginIsolated && typeof SharedArrayBuffer === "function"
        ? new Int32Array(new SharedArrayBuffer(4))
        : null;
  }

  start() {
    return new Promise((resolve, reject) => {
      const worker = new Worker(this.config.worker_url, { type: "module", name: "pyodide" });
      this.worker = worker;
      worker.onerror = (event) => reject(new Error(event.message || "the Python worker failed"));
      worker.onmessage = (event) => {
        const message = event.data;
        if (message.op === "event") {
          this.onEvent(JSON.parse(message.json));
        } else if (message.op === "done") {
          const waiter = this.pending.get(message.id);
          this.pending.delete(message.id);
          if (waiter) waiter({ outcome: message.outcome && JSON.parse(message.outcome), error: message.error });
        } else if (message.op === "ready") {
          resolve(message);
        } else if (message.op === "failed") {
          reject(new Error(message.message));
        }
      };
      worker.postMessage({
        op: "init",
        indexURL: new URL(this.config.pyodide_index_url, location.href).href,
        kernelURL: new URL(this.config.kernel_url, location.href).href,
        interruptBuffer: this.interruptBuffer,
      });
    });
  }

  request(message) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ ...message, id });
    });
  }

  // A cancel that came after its cell ended must not interrupt whatever runs next.
  clearInterrupt() {
    if (this.interruptBuffer) Atomics.store(this.interruptBuffer, 0, 0);
  }

  run(cell, code) {
    this.clearInterrupt();
    return this.request({ op: "run", cell, code });
  }

  reset() {
    this.clearInterrupt();
    return this.request({ op: "reset" });
  }

  interrupt() {
    if (!this.interruptBuffer) return false;
    Atomics.store(this.interruptBuffer, 0, 2); // SIGINT: KeyboardInterrupt in the cell
    return true;
  }
}

// -- The page's view ----------------------------------------------------------------------------

class View {
  constructor(doc) {
    this.doc = doc;
    this.status = doc.getElementById("status");
    this.log = doc.getElementById("log");
    this.tasks = new Map();
    this.dirty = new Set();
    this.frame = null;
  }

  el(tag, attrs = {}, text = null) {
    const node = this.doc.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== null) node.textContent = text;
    return node;
  }

  setStatus(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
  }

  setFact(id, text) {
    const node = this.doc.getElementById(id);
    if (node) node.textContent = text;
  }

  taskStarted(taskId, label) {
    this.doc.getElementById("log-empty")?.remove();
    const item = this.el("li", { class: "task", "data-task-id": taskId, "data-status": "running" });
    const heading = this.el("h3", {}, `${label} `);
    heading.append(this.el("span", { class: "outcome" }, "running"));
    item.append(heading);
    this.log.prepend(item);
    this.tasks.set(taskId, { item, cells: new Map() });
    while (this.log.children.length > VIEW_TASKS_MAX) {
      const last = this.log.lastElementChild;
      this.tasks.delete(last.dataset.taskId);
      last.remove();
    }
  }

  taskFinished(taskId, status, message) {
    const task = this.tasks.get(taskId);
    if (!task) return;
    task.item.dataset.status = status;
    task.item.querySelector(".outcome").textContent = message ? `${status}: ${message}` : status;
  }

  cell(taskId, index) {
    const task = this.tasks.get(taskId);
    if (!task) return null;
    let cell = task.cells.get(index);
    if (!cell) {
      const node = this.el("div", { class: "cell", "data-cell": String(index) });
      const prompt = this.el("div", { class: "prompt" }, `cell ${index}`);
      const code = this.el("pre", { class: "code" });
      const outputs = this.el("div", { class: "outputs" });
      node.append(prompt, code, outputs);
      task.item.append(node);
      cell = { node, prompt, code, outputs, lastStream: null };
      task.cells.set(index, cell);
    }
    return cell;
  }

  // Text is added in batches, once per animation frame, and each output shows at most
  // VIEW_TEXT_MAX characters: a cell printing a million lines must not freeze the page.
  text(node, text) {
    const shown = node.shownChars || 0;
    if (shown >= VIEW_TEXT_MAX) return;
    const room = VIEW_TEXT_MAX - shown;
    const cut = text.length > room;
    node.shownChars = shown + Math.min(text.length, room);
    node.pendingText = (node.pendingText || "") + (cut ? text.slice(0, room) + "\n… (cut in this view)" : text);
    this.dirty.add(node);
    if (this.frame === null) {
      this.frame = requestAnimationFrame(() => this.render());
    }
  }

  render() {
    this.frame = null;
    for (const node of this.dirty) {
      node.append(node.pendingText);
      node.pendingText = "";
    }
    this.dirty.clear();
  }

  event(taskId, type, data) {
    const cell = typeof data.cell === "number" ? this.cell(taskId, data.cell) : null;
    if (!cell) return;
    if (type === "cell.started") {
      this.text(cell.code, data.code);
    } else if (type === "process.stdout" || type === "process.stderr") {
      const stream = type.slice("process.".length);
      if (!cell.lastStream || cell.lastStream.dataset.stream !== stream) {
        cell.lastStream = this.el("pre", { class: `out ${stream}`, "data-stream": stream }, "");
        cell.outputs.append(cell.lastStream);
      }
      this.text(cell.lastStream, data.text);
    } else if (type === "output.display") {
      cell.lastStream = null;
      const kind = data.output_type === "execute_result" ? "result" : "display";
      const out = this.el("div", { class: `out ${kind}`, "data-output-type": data.output_type });
      const bundle = data.data || {};
      // Only text and images: HTML, SVG or JavaScript from the task's code never runs in this
      // page, which holds the user's session.
      out.append(this.el("span", { class: "plain" }, String(bundle["text/plain"] ?? "").slice(0, VIEW_TEXT_MAX)));
      for (const mime of ["image/png", "image/jpeg"]) {
        if (typeof bundle[mime] === "string") {
          out.append(this.el("img", { src: `data:${mime};base64,${bundle[mime]}`, alt: mime }));
        }
      }
      const others = Object.keys(bundle).filter((m) => m !== "text/plain");
      if (others.length) out.append(this.el("span", { class: "mimes" }, `[${others.join(", ")}]`));
      cell.outputs.append(out);
    } else if (type === "output.error") {
      cell.lastStream = null;
      const trace = (data.traceback || []).join("\n") || `${data.ename}: ${data.evalue}`;
      cell.outputs.append(this.el("pre", { class: "out error" }, trace.slice(0, VIEW_TEXT_MAX)));
    } else if (type === "output.clear") {
      cell.lastStream = null;
      cell.outputs.replaceChildren();
    } else if (type === "cell.finished") {
      const count = data.execution_count === null ? " " : data.execution_count;
      cell.prompt.textContent = `cell ${data.cell} · In [${count}] · ${data.status} · ${data.duration_ms} ms`;
      cell.node.dataset.status = data.status;
    }
  }
}

// -- The runtime --------------------------------------------------------------------------------

class TaskRun {
  constructor(task, { local = false } = {}) {
    this.task = task;
    this.id = String(task.id);
    this.local = local;
    this.cancelled = false;
    this.started = false;
    this.finished = false; // its final frame is made
    this.delivered = false; // … and handed to an open socket
    this.revoked = false; // the server took it back: nothing more is sent for it
    this.finalFrame = null;
  }
}

function fail(code, message, details = {}) {
  return { code, message, details };
}

export class BrowserRuntime {
  constructor(config, view) {
    this.config = config;
    this.view = view;
    this.runtimeId = randomId();
    this.python = null;
    this.info = null;
    this.ws = null;
    this.registered = false;
    this.displaced = false;
    this.attempts = 0;
    this.heartbeat = null;
    this.outbox = []; // frames made while not attached, sent once registered again
    this.pending = new Map(); // task id -> events not sent yet
    this.flushTimer = null;
    this.runs = new Map(); // task id -> TaskRun
    this.active = null; // the TaskRun whose cell is running
    this.chain = Promise.resolve(); // tasks run one after the other
    this.localCount = 0;
    this.fresh = true; // no task ran in this interpreter yet
  }

  async start() {
    this.view.setFact("runtime-id", this.runtimeId);
    if (!this.config.pyodide_installed) {
      this.view.setStatus("failed", "Pyodide is not installed on this server (run `npm ci`, see docs/browser-runtime.md).");
      return;
    }
    this.view.setStatus("loading", "Loading Pyodide…");
    this.python = new PythonWorker(this.config, (event) => this.onPythonEvent(event));
    const loading = performance.now();
    try {
      this.info = await this.python.start();
      this.info.loadMs = Math.round(performance.now() - loading);
    } catch (err) {
      this.view.setStatus("failed", `Pyodide did not load: ${errorMessage(err)}`);
      return;
    }
    this.view.setFact("python-version", `Python ${this.info.pythonVersion} (Pyodide ${this.info.pyodideVersion})`);
    this.view.setFact(
      "interrupts",
      this.info.interruptible
        ? "interrupts the running cell"
        : "stops at the next cell boundary (no SharedArrayBuffer here)",
    );
    this.connect();
  }

  // -- the socket ---------------------------------------------------------------------------------
  connect() {
    const url = new URL(this.config.ws_path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    this.view.setStatus("connecting", "Connecting…");
    const ws = new WebSocket(url.href, [this.config.protocol]);
    this.ws = ws;
    this.registered = false;
    this.lastError = null;
    ws.onopen = () => {
      ws.send(
        JSON.stringify({
          type: "runtime.register",
          runtime_id: this.runtimeId,
          session_id: this.config.session_id,
          kinds: ["python"],
          capabilities: {
            can_execute_code: true,
            can_execute_sql: false,
            can_execute_ai: false,
            runtime: "pyodide",
            pyodide_version: this.info.pyodideVersion,
            python_version: this.info.pythonVersion,
            interruptible: this.info.interruptible,
          },
          resume: this.resumable(),
        }),
      );
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onFrame(ws, frame);
    };
    ws.onclose = (event) => this.onClose(ws, event);
  }

  resumable() {
    return [...this.runs.values()].filter((r) => !r.local && !r.revoked && !r.delivered).map((r) => r.id);
  }

  onFrame(ws, frame) {
    if (ws !== this.ws) return;
    switch (frame.type) {
      case "runtime.registered":
        this.onRegistered(frame);
        break;
      case "task.assign":
        this.assign(frame.task || {}, Boolean(frame.resumed));
        break;
      case "task.cancel":
        this.cancel(String(frame.task_id));
        break;
      case "runtime.displaced":
        this.displaced = true;
        this.view.setStatus("displaced", `Displaced by runtime ${frame.by || "another runtime"}: this page no longer runs the session's tasks.`);
        break;
      case "error":
        this.lastError = (frame.error && frame.error.message) || "error";
        console.warn("browser runtime: server error", frame.error);
        if (frame.error?.code === "task_not_assigned") this.revoke(String(frame.error.details?.task_id));
        break;
      default:
        break; // pong, and whatever a newer server adds
    }
  }

  onRegistered(frame) {
    this.registered = true;
    this.attempts = 0;
    const displaced = frame.displaced ? ` (took over from ${frame.displaced})` : "";
    this.view.setStatus("attached", `Attached${displaced}`);
    // Tasks this page still holds that the server did not take back are over server-side.
    const resumed = new Set(frame.resumed || []);
    for (const run of this.runs.values()) {
      if (!run.local && !run.delivered && !run.revoked && !resumed.has(run.id)) this.revoke(run.id);
    }
    const queued = this.outbox;
    this.outbox = [];
    for (const message of queued) this.send(message);
    const period = Math.max(1, Number(frame.heartbeat_s) || 15) * 1000;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.send({ type: "ping" }, { drop: true }), period);
  }

  onClose(ws, event) {
    if (ws !== this.ws) return;
    clearInterval(this.heartbeat);
    this.registered = false;
    this.ws = null;
    if (this.displaced || event.code === CLOSE_DISPLACED) {
      this.displaced = true;
      if (this.view.status.dataset.state !== "displaced") {
        this.view.setStatus("displaced", "Displaced by another runtime: this page no longer runs the session's tasks.");
      }
      for (const run of this.runs.values()) if (!run.finished) this.revoke(run.id);
      return;
    }
    if (event.code in PERMANENT_CLOSES) {
      const why = this.lastError || PERMANENT_CLOSES[event.code];
      this.view.setStatus("disconnected", `Disconnected (${event.code}): ${why}. Reload the page to try again.`);
      return;
    }
    let delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempts);
    delay = delay / 2 + (Math.random() * delay) / 2;
    if (event.code === CLOSE_THROTTLED) delay = Math.max(delay, 5000);
    this.attempts += 1;
    this.view.setStatus("disconnected", `Disconnected (${event.code || "no code"}); reconnecting in ${(delay / 1000).toFixed(1)} s…`);
    setTimeout(() => this.connect(), delay);
  }

  send(message, { drop = false } = {}) {
    if (message.task_id) {
      const run = this.runs.get(message.task_id);
      if (run && run.revoked) return;
    }
    if (this.registered && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      if (message.type === "task.complete" || message.type === "task.fail") {
        const run = this.runs.get(message.task_id);
        if (run) run.delivered = true;
      }
    } else if (!drop) {
      this.outbox.push(message);
    }
  }

  // -- events ---------------------------------------------------------------------------------------
  onPythonEvent(event) {
    const run = this.active;
    if (run) this.emit(run, event.type, event.data);
  }

  emit(run, type, data) {
    this.view.event(run.id, type, data);
    if (run.sink) {
      run.sink.push({ type, data });
      return;
    }
    if (run.revoked) return;
    let batch = this.pending.get(run.id);
    if (!batch) {
      batch = [];
      this.pending.set(run.id, batch);
    }
    const last = batch[batch.length - 1];
    const stream = type === "process.stdout" || type === "process.stderr";
    if (stream && last && last.type === type && last.data.cell === data.cell && last.data.text.length + data.text.length <= MAX_COALESCED_TEXT) {
      last.data = { ...last.data, text: last.data.text + data.text };
    } else {
      batch.push({ type, data });
    }
    if (this.flushTimer === null) this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush() {
    clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const [taskId, events] of this.pending) {
      for (let i = 0; i < events.length; i += MAX_EVENTS_PER_FRAME) {
        this.send({ type: "task.events", task_id: taskId, events: events.slice(i, i + MAX_EVENTS_PER_FRAME) });
      }
    }
    this.pending.clear();
  }

  // -- tasks ----------------------------------------------------------------------------------------
  assign(task, resumed) {
    const id = String(task.id);
    const known = this.runs.get(id);
    if (known && !known.revoked) {
      // Assigned again: while it runs, a repeat to ignore; once it ran, the server lost its
      // final frame (the socket dropped right after it went out): say it again, never re-run.
      if (known.finished) {
        known.delivered = false;
        this.send(known.finalFrame);
      }
      return;
    }
    const run = new TaskRun(task);
    this.runs.set(id, run);
    this.view.taskStarted(id, `Task ${id.slice(0, 8)}${resumed ? " (resumed)" : ""}`);
    this.enqueue(run);
  }

  enqueue(run) {
    const done = this.chain.then(() => this.runTask(run));
    this.chain = done.catch(() => {});
    return done;
  }

  cancel(taskId) {
    const run = this.runs.get(taskId);
    if (!run || run.finished) return;
    run.cancelled = true;
    if (this.active === run) this.python.interrupt();
  }

  revoke(taskId) {
    const run = this.runs.get(taskId);
    if (!run) return;
    run.revoked = true;
    this.pending.delete(taskId);
    this.outbox = this.outbox.filter((m) => m.task_id !== taskId);
    if (!run.finished) {
      this.cancel(taskId);
      this.view.taskFinished(taskId, "cancelled", "taken back by the server");
    }
  }

  async runTask(run) {
    let frame;
    try {
      run.started = true;
      frame = await this.execute(run);
    } catch (err) {
      frame = { type: "task.fail", task_id: run.id, error: fail("runtime_error", `The browser runtime failed: ${errorMessage(err)}`) };
    } finally {
      this.active = null;
    }
    run.finished = true;
    run.finalFrame = frame;
    this.prune();
    if (!run.revoked) {
      const error = frame.error;
      const status = frame.type === "task.complete" ? "succeeded" : error.code === "cancelled" ? "cancelled" : "failed";
      this.view.taskFinished(run.id, status, error ? error.message : "");
    }
    if (!run.sink) {
      this.flush();
      this.send(frame);
    }
    return frame;
  }

  prune() {
    // Forget the oldest settled tasks (a Map iterates in insertion order).
    for (const [id, run] of this.runs) {
      if (this.runs.size <= MAX_RUNS_KEPT) break;
      if (run.finished && (run.delivered || run.revoked || run.local)) this.runs.delete(id);
    }
  }

  // One task, as runtime_client.notebook.run_python_task runs it on a Jupyter kernel.
  async execute(run) {
    const taskId = run.id;
    const input = run.task.input ?? {};
    const failed = (error) => ({ type: "task.fail", task_id: taskId, error });
    if (typeof input !== "object" || Array.isArray(input)) {
      return failed(fail("invalid_input", "The task input must be an object with cells or code."));
    }
    if ("notebook" in input) {
      return failed(
        fail("unsupported", "The browser runtime cannot read the session's workspace: send cells or code instead of a notebook.", { runtime: "pyodide" }),
      );
    }
    const items = "cells" in input ? input.cells : [input.code ?? ""];
    if (!Array.isArray(items)) return failed(fail("invalid_input", "cells must be a list."));
    const cells = [];
    for (const [index, item] of items.entries()) {
      if (typeof item === "string") {
        cells.push(item);
      } else if (item && (typeof item.sql === "string" || typeof item.ai === "string")) {
        // SQL cells read the session's database and AI cells ask the agent's model: both are
        // on the server, out of this page's reach.
        const language = typeof item.sql === "string" ? "sql" : "ai";
        return failed(
          fail("unsupported", `Cell ${index} is ${language === "sql" ? "a SQL" : "an AI"} cell: the browser runtime runs Python cells only.`, { cell: index, language, runtime: "pyodide" }),
        );
      } else {
        return failed(fail("invalid_input", 'A cell is a string of code, {"sql": "…"} or {"ai": "…"}.'));
      }
    }
    const allowErrors = Boolean(input.allow_errors);
    this.active = run;
    if (input.restart && !run.cancelled) {
      const { error } = await this.python.reset();
      if (error) return failed(fail("runtime_error", `The interpreter did not restart: ${error}`));
      this.fresh = false;
      this.emit(run, "kernel.restarted", { reason: "requested" });
    } else if (this.fresh) {
      // The first task of this page: whatever earlier tasks of the session defined is gone.
      this.fresh = false;
      this.emit(run, "kernel.started", { started: 1, duration_ms: this.info.loadMs });
    }
    const done = [];
    let output = null;
    let failure = null;
    for (const [index, code] of cells.entries()) {
      if (run.cancelled) break;
      const { outcome, error } = await this.python.run(index, code);
      if (!outcome) {
        // Interrupted outside the cell's own code (or the kernel broke): the cell is over.
        this.emit(run, "cell.finished", { cell: index, status: "aborted", execution_count: null, duration_ms: 0 });
        done.push({ cell: index, status: "aborted", execution_count: null });
        if (!run.cancelled) failure = fail("runtime_error", `Cell ${index} could not run: ${error}`, { cell: index });
        break;
      }
      done.push({ cell: index, status: outcome.status, execution_count: outcome.execution_count });
      if (outcome.output) output = outcome.output;
      if (run.cancelled) break;
      if (outcome.status === "error" || outcome.status === "aborted") {
        if (outcome.status === "error" && allowErrors) continue;
        const err = outcome.error || {};
        failure = fail("cell_error", `Cell ${index} raised ${err.ename || "an error"}: ${err.evalue || ""}`, { cell: index, ...err });
        break;
      }
    }
    const result = { cells: done, execution_count: done.length ? done[done.length - 1].execution_count : null, output };
    if (run.cancelled) return failed(fail("cancelled", "The task was cancelled."));
    if (failure) return failed(failure);
    return { type: "task.complete", task_id: taskId, result, usage: {} };
  }

  // Runs `input` in this page's interpreter without the server (debugging, tests): the same
  // path as a task, but the events stay here. Resolves to {events, frame}.
  async runLocal(input) {
    this.localCount += 1;
    const run = new TaskRun({ id: `local-${this.localCount}`, input }, { local: true });
    run.sink = [];
    this.runs.set(run.id, run);
    this.view.taskStarted(run.id, `Local run ${this.localCount}`);
    const frame = await this.enqueue(run);
    return { events: run.sink, frame };
  }
}

const config = JSON.parse(document.getElementById("runtime-config").textContent);
const runtime = new BrowserRuntime(config, new View(document));
globalThis.browserRuntime = runtime;
runtime.start();
