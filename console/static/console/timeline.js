// The timeline of a session: one block per task (type, live status badge, input summary,
// cancel) with the task's events in seq order (event-views.js), session-level events in
// blocks of their own. It shows a window of the log, not all of it, so a 50,000-event session
// stays responsive: the newest page on load, "Load earlier events" prepends the previous
// page, at most `maxRendered` event elements are kept (the oldest are trimmed as live events
// arrive; after loading earlier pages the newest are, and "Show latest events" comes back).
// Live events are rendered once per animation frame, however fast they arrive.

import { api, clearError, showError, when } from "./api.js";
import { removeEvent, renderEvent } from "./event-views.js";

export const ACTIVE = new Set(["queued", "running", "waiting"]);
export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** One line describing a task's input: its command, code or message, else compact JSON. */
export function inputSummary(input) {
  if (!input || typeof input !== "object") return "";
  const main = ["message", "command", "code", "prompt", "query", "notebook"]
    .map((k) => input[k]).find((v) => typeof v === "string" && v.trim());
  let text = main ?? (Array.isArray(input.cells) ? input.cells.map((c) => (typeof c === "string" ? c : JSON.stringify(c))).join(" ⏎ ") : null);
  if (text == null) text = Object.keys(input).length ? JSON.stringify(input) : "";
  text = text.replace(/\s+/g, " ").trim();
  return text.length > 100 ? `${text.slice(0, 99)}…` : text;
}

export class Timeline {
  /**
   * `options`: root, earlierButton, latestButton, emptyEl, loadingEl, errorBox (elements);
   * fetchPage(after, limit) → {events, last_seq}; fetchTask(id) → task (or null: none);
   * cancelTask(id) → task (or null: read-only); onSelect(taskId, source); onTasksChanged();
   * pageSize, maxRendered, readOnly, artifactUrl(id).
   */
  constructor(options) {
    Object.assign(this, {
      pageSize: 300, maxRendered: 2000, readOnly: true, fetchTask: null, cancelTask: null,
      onSelect: () => {}, onTasksChanged: () => {},
    }, options);
    this.tasks = new Map(); // task id → {task, statusSeq}
    this.blocks = new Map(); // block key → block
    this.nodes = []; // [{seq, el, block}] in seq order: the rendered window
    this.first = 1; // the window holds the events first..hi
    this.hi = 0;
    this.detached = false; // newest events trimmed after "Load earlier"
    this.latest = 0; // the newest seq seen (rendered or not)
    this.loading = false;
    this.pending = []; // live events received while a page loads
    this.queue = []; // live events waiting for the next animation frame
    this.scheduled = false;
    this.selected = null;
    this.ctx = { artifactUrl: this.artifactUrl, readOnly: this.readOnly, touched: new Set() };
    this.earlierButton?.addEventListener("click", () => this.loadEarlier());
    this.latestButton?.addEventListener("click", () => this.showLatest(this.latest));
  }

  // Tasks ---------------------------------------------------------------------------------

  /** Record a task object from the API (fresh as of event `asOfSeq`) and refresh its header. */
  setTask(task, asOfSeq = 0) {
    const entry = this.tasks.get(task.id) ?? { task: {}, statusSeq: -1 };
    const keepStatus = entry.statusSeq > asOfSeq;
    const { status, current_phase: phase } = entry.task;
    entry.task = { ...entry.task, ...task };
    if (keepStatus) Object.assign(entry.task, { status, current_phase: phase });
    else entry.statusSeq = asOfSeq;
    this.tasks.set(task.id, entry);
    this.refreshHeader(task.id);
    this.onTasksChanged();
  }

  applyStatus(env) {
    if (env.type !== "task.status" || !env.task_id) return;
    const d = env.data ?? {};
    const entry = this.tasks.get(env.task_id) ?? { task: { id: env.task_id }, statusSeq: -1 };
    this.tasks.set(env.task_id, entry);
    if (d.task_type && !entry.task.task_type) entry.task.task_type = d.task_type;
    if (!entry.task.created_at) entry.task.created_at = env.ts;
    if (env.seq <= entry.statusSeq) return; // older history: the header already knows better
    entry.statusSeq = env.seq;
    Object.assign(entry.task, { status: d.status, current_phase: d.phase ?? "" });
    if (TERMINAL.has(d.status)) Object.assign(entry.task, { error: d.error ?? null, result: d.result ?? null });
    this.refreshHeader(env.task_id);
    this.onTasksChanged();
  }

  /** A block for a task the user just created (before its first event arrives). */
  addTask(task, asOfSeq) {
    this.setTask(task, asOfSeq);
    if (!this.detached && !this.blocks.has(task.id)) this.blockFor({ task_id: task.id }, false);
    this.updateControls();
  }

  /** Select a task; `source` is "user" (a click, a new task) or "start" (the page's default). */
  select(taskId, source = "user") {
    this.selected = taskId;
    for (const block of this.blocks.values()) {
      const on = block.taskId === taskId;
      block.el.classList.toggle("selected", on);
      block.select?.setAttribute("aria-pressed", String(on));
    }
    this.onSelect(taskId, source);
  }

  // Blocks --------------------------------------------------------------------------------

  blockFor(env, prepend) {
    let key = env.task_id;
    if (!key) {
      const edge = prepend ? this.root.firstElementChild : this.root.lastElementChild;
      const edgeBlock = edge && this.blocks.get(edge.dataset.key);
      if (edgeBlock && !edgeBlock.taskId) return edgeBlock;
      key = `session-${env.seq}`;
    }
    const existing = this.blocks.get(key);
    if (existing) return existing;
    const block = env.task_id ? this.taskBlock(env.task_id) : this.sessionBlock(key);
    block.el.dataset.key = key;
    this.blocks.set(key, block);
    if (prepend) this.root.prepend(block.el);
    else this.root.append(block.el);
    return block;
  }

  sessionBlock(key) {
    const article = el("article", "task session-events");
    const head = el("header", "task-head");
    head.append(el("span", "task-title muted", "Session events"));
    const events = el("div", "task-events");
    article.append(head, events);
    return { key, taskId: null, el: article, events, procs: new Map(), messages: new Map(), displays: new Map() };
  }

  taskBlock(taskId) {
    const article = el("article", "task");
    article.dataset.taskId = taskId;
    const head = el("header", "task-head");
    const select = el("button", "task-select");
    select.type = "button";
    select.setAttribute("aria-pressed", String(this.selected === taskId));
    select.title = "Select this task (files and debugger follow it)";
    select.append(el("span", "task-type"), " ", el("span", "task-summary"));
    select.addEventListener("click", () => this.select(taskId));
    const badge = el("span", "badge task-status");
    const phase = el("span", "task-phase muted");
    const time = el("time", "task-time muted");
    head.append(select, badge, phase, time);
    const errorBox = el("div", "error-box");
    errorBox.setAttribute("role", "alert");
    errorBox.tabIndex = -1;
    errorBox.hidden = true;
    let cancel = null;
    if (!this.readOnly && this.cancelTask) {
      cancel = el("button", "danger task-cancel", "Cancel");
      cancel.type = "button";
      cancel.hidden = true;
      cancel.addEventListener("click", () => this.cancel(taskId));
      head.append(cancel);
    }
    const events = el("div", "task-events");
    article.append(head, errorBox, events);
    article.classList.toggle("selected", this.selected === taskId);
    const block = {
      taskId, el: article, events, procs: new Map(), messages: new Map(), displays: new Map(),
      select, badge, phase, time, cancel, errorBox,
    };
    if (!this.tasks.has(taskId)) {
      this.tasks.set(taskId, { task: { id: taskId }, statusSeq: -1 });
      this.fetchTask?.(taskId).then((task) => task && this.setTask(task, -1)).catch(() => {});
    }
    queueMicrotask(() => this.refreshHeader(taskId));
    return block;
  }

  refreshHeader(taskId) {
    const block = this.blocks.get(taskId);
    const task = this.tasks.get(taskId)?.task;
    if (!block || !task) return;
    const status = task.status ?? "unknown";
    block.el.dataset.status = status;
    block.select.querySelector(".task-type").textContent = task.task_type ?? "task";
    const summary = inputSummary(task.input ?? (task.hint ? { command: task.hint } : null));
    block.select.querySelector(".task-summary").textContent = summary || `task ${taskId.slice(0, 8)}`;
    block.badge.dataset.status = status;
    block.badge.textContent = status.replace("_", " ");
    block.phase.textContent = ACTIVE.has(status) && task.current_phase ? task.current_phase : "";
    if (task.created_at) {
      block.time.dateTime = task.created_at;
      block.time.textContent = when(task.created_at);
    }
    if (block.cancel) {
      block.cancel.hidden = !ACTIVE.has(status);
      const cancelling = Boolean(task.cancel_requested_at) || block.cancelling;
      block.cancel.disabled = cancelling;
      block.cancel.textContent = cancelling ? "Cancelling…" : "Cancel";
    }
  }

  async cancel(taskId) {
    const block = this.blocks.get(taskId);
    if (!block) return;
    clearError(block.errorBox);
    block.cancelling = true;
    this.refreshHeader(taskId);
    // The answer describes the task as of now; a status event that arrives meanwhile is newer.
    const asOf = this.tasks.get(taskId)?.statusSeq ?? -1;
    try {
      const task = await this.cancelTask(taskId);
      if (task) this.setTask(task, asOf);
    } catch (err) {
      block.cancelling = false;
      this.refreshHeader(taskId);
      showError(block.errorBox, err);
    }
  }

  // Events --------------------------------------------------------------------------------

  /** Without the task's input (the share view has none), name it by what it ran. */
  hint(env) {
    const task = env.task_id && this.tasks.get(env.task_id)?.task;
    if (!task || task.input || task.hint) return;
    const d = env.data ?? {};
    let hint = null;
    if (env.type === "process.started" && Array.isArray(d.argv)) {
      hint = d.argv[0] === "bash" && d.argv[1] === "-c" ? d.argv[2] : d.argv.join(" ");
    } else if (env.type === "cell.started" || env.type === "message.user") {
      hint = d.code ?? d.text;
    }
    if (typeof hint === "string" && hint.trim()) {
      task.hint = hint;
      this.refreshHeader(env.task_id);
    }
  }

  renderOne(env, prepend) {
    this.hint(env);
    const block = this.blockFor(env, prepend);
    const node = renderEvent(env, block, this.ctx, prepend);
    return node ? { seq: env.seq, el: node, block } : null;
  }

  /** A live event (in seq order, exactly once): shown at the next animation frame. */
  push(env) {
    this.applyStatus(env);
    this.latest = Math.max(this.latest, env.seq);
    if (this.loading) {
      this.pending.push(env);
    } else if (this.detached) {
      this.updateControls();
    } else {
      this.queue.push(env);
      if (!this.scheduled) {
        this.scheduled = true;
        requestAnimationFrame(() => this.flush());
      }
    }
  }

  flush() {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (this.detached || !batch.length) return;
    const doc = document.scrollingElement ?? document.documentElement;
    const atBottom = doc.scrollHeight - doc.scrollTop - doc.clientHeight < 120;
    for (const env of batch) {
      if (env.seq <= this.hi) continue;
      const rendered = this.renderOne(env, false);
      if (rendered) this.nodes.push(rendered);
      this.hi = env.seq;
    }
    this.trimOldest();
    for (const pre of this.ctx.touched) {
      if (pre.dataset.scrolled !== "up") pre.scrollTop = pre.scrollHeight;
    }
    this.ctx.touched.clear();
    this.updateControls();
    if (atBottom && doc.scrollHeight > doc.clientHeight) doc.scrollTop = doc.scrollHeight;
  }

  trimOldest() {
    const touched = new Set();
    while (this.nodes.length > this.maxRendered) {
      const { el: node, block } = this.nodes.shift();
      removeEvent(node, block);
      touched.add(block);
    }
    this.dropEmpty(touched);
    if (touched.size) this.first = this.nodes.length ? this.nodes[0].seq : this.hi + 1;
  }

  trimNewest() {
    const touched = new Set();
    while (this.nodes.length > this.maxRendered) {
      const { el: node, block } = this.nodes.pop();
      removeEvent(node, block);
      touched.add(block);
    }
    this.dropEmpty(touched);
    if (touched.size) {
      this.detached = true;
      this.hi = this.nodes.length ? this.nodes[this.nodes.length - 1].seq : this.first - 1;
    }
  }

  dropEmpty(blocks) {
    for (const block of blocks) {
      if (!block.events.querySelector(".ev")) {
        block.el.remove();
        this.blocks.delete(block.taskId ?? block.el.dataset.key);
      }
    }
  }

  /** Load the newest page ending at `lastSeq`; returns its events (oldest first). */
  async loadTail(lastSeq) {
    this.loading = true;
    this.updateControls();
    const after = Math.max(0, lastSeq - this.pageSize);
    let events = [];
    try {
      const page = await this.fetchPage(after, this.pageSize);
      events = page.events;
    } catch (err) {
      showError(this.errorBox, err);
    }
    this.first = after + 1;
    this.hi = after;
    for (const env of events) {
      this.applyStatus(env);
      const rendered = this.renderOne(env, false);
      if (rendered) this.nodes.push(rendered);
      this.hi = env.seq;
    }
    this.trimOldest();
    this.latest = Math.max(this.latest, this.hi);
    this.loading = false;
    const pending = this.pending.filter((env) => env.seq > this.hi);
    this.pending = [];
    pending.forEach((env) => this.push(env));
    this.updateControls();
    return events;
  }

  async loadEarlier() {
    if (this.first <= 1 || this.loadingEarlier) return;
    this.loadingEarlier = true;
    this.earlierButton.disabled = true;
    clearError(this.errorBox);
    const end = this.first - 1;
    const start = Math.max(1, end - this.pageSize + 1);
    try {
      const page = await this.fetchPage(start - 1, end - start + 1);
      const events = page.events.filter((env) => env.seq < this.first);
      // Keep what the reader looks at in place while content appears above it.
      const anchor = this.root.firstElementChild;
      const before = anchor?.getBoundingClientRect().top ?? 0;
      const added = [];
      for (const env of [...events].reverse()) {
        this.applyStatus(env);
        const rendered = this.renderOne(env, true);
        if (rendered) added.push(rendered);
      }
      this.nodes.unshift(...added.reverse());
      this.first = start;
      this.trimNewest();
      if (anchor?.isConnected) window.scrollBy(0, anchor.getBoundingClientRect().top - before);
    } catch (err) {
      showError(this.errorBox, err);
    } finally {
      this.loadingEarlier = false;
      this.earlierButton.disabled = false;
      this.updateControls();
      if (this.earlierButton.hidden) this.root.focus();
    }
  }

  /** Drop the window and load the newest page again (after "Load earlier" detached it). */
  async showLatest(lastSeq) {
    this.root.replaceChildren();
    this.blocks.clear();
    this.nodes = [];
    this.queue = [];
    this.detached = false;
    await this.loadTail(lastSeq);
    const doc = document.scrollingElement ?? document.documentElement;
    doc.scrollTop = doc.scrollHeight;
    this.root.focus();
  }

  updateControls() {
    if (this.earlierButton) this.earlierButton.hidden = this.loading || this.first <= 1;
    if (this.latestButton) {
      this.latestButton.hidden = !this.detached;
      const newer = this.latest - this.hi;
      this.latestButton.textContent = newer > 0
        ? `Show latest events (${newer} newer)` : "Show latest events";
    }
    if (this.loadingEl) this.loadingEl.hidden = !this.loading;
    this.root.setAttribute("aria-busy", String(this.loading));
    if (this.emptyEl) {
      const tasks = [...this.blocks.values()].some((block) => block.taskId);
      this.emptyEl.hidden = this.loading || tasks || this.first > 1 || this.detached;
    }
  }

  /** How many event elements are rendered (the window's size). */
  get rendered() {
    return this.nodes.length;
  }
}

/** "Show trace events": the checkbox shows or hides the `.trace` lines of the timeline. */
export function bindTraceToggle(checkbox, root) {
  if (!checkbox) return;
  const apply = () => root.classList.toggle("hide-trace", !checkbox.checked);
  checkbox.addEventListener("change", apply);
  apply();
}

/**
 * Keep the session's status badge live from its tasks' statuses: `active` while any task is
 * queued, running or waiting, else `idle` (as the server does; `closed` stays closed).
 */
export function sessionStatusUpdater(badge, timeline) {
  return () => {
    if (!badge || badge.dataset.status === "closed") return;
    const tasks = [...timeline.tasks.values()].map((entry) => entry.task);
    if (!tasks.length) return;
    const status = tasks.some((task) => ACTIVE.has(task.status)) ? "active" : "idle";
    badge.dataset.status = status;
    badge.textContent = status;
  };
}

/** Dispatch `name` with `detail` on `document` (the page's module contract, docs/console.md). */
export function emit(name, detail) {
  document.dispatchEvent(new CustomEvent(name, { detail }));
}

/**
 * The timeline of a session page or share page: the standard elements (`#timeline`,
 * `#load-earlier`, `#show-latest`, `#timeline-empty`, `#timeline-loading`, `#timeline-error`),
 * pages of `config.events_api`, the page config's sizes and artifact URL; `options` adds
 * or overrides Timeline options (fetchTask, cancelTask, onSelect, readOnly). Also wires the
 * session status badge and the trace-events toggle. Returns {timeline, eventsPage}.
 */
export function pageTimeline(config, options = {}) {
  const $ = (id) => document.getElementById(id);
  const eventsPage = (after, limit) =>
    api("GET", `${config.events_api}?after=${after}&limit=${limit}`);
  const timeline = new Timeline({
    root: $("timeline"),
    earlierButton: $("load-earlier"),
    latestButton: $("show-latest"),
    emptyEl: $("timeline-empty"),
    loadingEl: $("timeline-loading"),
    errorBox: $("timeline-error"),
    fetchPage: eventsPage,
    pageSize: config.page_events ?? 300,
    maxRendered: config.max_rendered ?? 2000,
    artifactUrl: (id) => config.artifact_url.replace("{id}", encodeURIComponent(id)),
    ...options,
  });
  timeline.onTasksChanged = sessionStatusUpdater($("session-status"), timeline);
  bindTraceToggle($("show-trace"), $("timeline"));
  return { timeline, eventsPage };
}
