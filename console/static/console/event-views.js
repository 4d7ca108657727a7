// How each event type looks in a task block of the timeline (timeline.js owns the blocks, the
// order and the window). `renderEvent` builds the event's element, marked `.ev` with
// `data-seq`, puts it in its place inside the block and returns it (or null when the event
// only updated something already shown). Types are DESIGN §3's plus the python kind's;
// unknown types become one compact JSON line. Events over EVENT_INLINE_MAX_BYTES arrive as
// {truncated, preview, artifact} (sessions/services/events.py) and get a link to the payload.

import {
  AnsiStream, artifactLink, formatBytes, formatDuration, renderAnsi, renderJson,
  renderMarkdown, renderMime,
} from "./render.js";

// Shown only with "Show trace events": the debugger's and the runtime's bookkeeping.
const TRACE_TYPES = new Set([
  "step.started", "step.finished", "debug.resumed", "usage", "cell.finished", "kernel.started",
  "process.started", "llm.request", "output.clear",
]);
const TRACE_PREFIXES = /^(sandbox|session|runtime)\./;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** A new event element: `.ev` with the envelope's seq and type. */
function ev(env, tag = "div", className = "") {
  const node = el(tag, `ev ${className}`.trim());
  node.dataset.seq = String(env.seq);
  node.dataset.type = env.type;
  if (TRACE_TYPES.has(env.type) || TRACE_PREFIXES.test(env.type)) node.classList.add("trace");
  return node;
}

/** A one-line event: a label and text. */
function line(env, label, text = "", className = "") {
  const node = ev(env, "div", `compact ${className}`);
  node.append(el("span", "ev-label", label));
  if (text) node.append(" ", el("span", "ev-text", text));
  return node;
}

function place(block, node, prepend) {
  if (prepend) block.events.prepend(node);
  else block.events.append(node);
  return node;
}

function payloadLink(env, ctx) {
  const ref = env.data?.artifact;
  if (!env.data?.truncated || !ref?.id) return null;
  return artifactLink({ name: `${env.type} payload`, ...ref }, ctx.artifactUrl,
    `Full payload (${formatBytes(ref.size)})`);
}

// Process terminals: one per process id in a block, stdout and stderr interleaved in order.
function procFor(block, pid, prepend) {
  let proc = block.procs.get(pid);
  if (proc && !proc.box.isConnected) proc = null;
  if (!proc) {
    const box = el("div", "proc");
    box.dataset.process = pid;
    const head = el("div", "proc-head muted");
    head.append(el("span", "proc-name", `process ${pid}`));
    const pre = el("pre", "terminal");
    pre.setAttribute("role", "log");
    pre.setAttribute("aria-label", `Output of process ${pid}`);
    pre.tabIndex = 0; // scrollable: reachable from the keyboard
    // Live output keeps the terminal scrolled to its end unless the reader scrolled up.
    pre.addEventListener("scroll", () => {
      const up = pre.scrollHeight - pre.scrollTop - pre.clientHeight > 24;
      pre.dataset.scrolled = up ? "up" : "";
    }, { passive: true });
    const foot = el("div", "proc-foot");
    box.append(head, pre, foot);
    proc = { box, head, pre, foot, streams: {} };
    block.procs.set(pid, proc);
    place(block, box, prepend);
  }
  return proc;
}

function processChunk(env, block, ctx, prepend) {
  const stream = env.type === "process.stderr" ? "stderr" : "stdout";
  const proc = procFor(block, String(env.data.process_id ?? "main"), prepend);
  const node = ev(env, "span", `chunk ${stream}`);
  const text = env.data.truncated ? env.data.preview : env.data.text;
  // Older chunks loaded later start a fresh colour state; live ones continue their stream's.
  const ansi = prepend ? new AnsiStream() : (proc.streams[stream] ??= new AnsiStream());
  node.append(ansi.render(text ?? ""));
  const link = payloadLink(env, ctx);
  if (link) node.append(" ", link, "\n");
  if (prepend) proc.pre.prepend(node);
  else {
    proc.pre.append(node);
    ctx.touched?.add(proc.pre);
  }
  return node;
}

function processExit(env, block, prepend) {
  const d = env.data;
  const proc = procFor(block, String(d.process_id ?? "main"), prepend);
  const ok = d.exit_code === 0;
  const bits = [`exit code ${d.exit_code ?? "?"}`, formatDuration(d.duration_ms)];
  if (d.timed_out) bits.push("timed out");
  if (d.killed) bits.push("killed");
  if (d.limit) bits.push(`limit: ${d.limit}`);
  const node = ev(env, "div", `compact proc-exit ${ok ? "ok" : "fail"}`);
  node.textContent = bits.filter(Boolean).join(" · ");
  proc.foot.append(node);
  return node;
}

function processOther(env, block, prepend) {
  const d = env.data;
  const proc = procFor(block, String(d.process_id ?? "main"), prepend);
  let node;
  if (env.type === "process.started") {
    node = ev(env, "span", "compact proc-argv");
    node.textContent = `$ ${(d.argv ?? []).join(" ")}`.slice(0, 300);
    proc.head.append(" ", node);
  } else {
    node = line(env, "output truncated", `after ${formatBytes(d.limit_bytes)}`, "warn");
    proc.foot.append(node);
  }
  return node;
}

// Messages: deltas stream into one box per message id; message.completed replaces them with
// the whole text as markdown.
function msgFor(block, id, prepend) {
  let msg = block.messages.get(id);
  if (msg && !msg.box.isConnected) msg = null;
  if (!msg) {
    const box = el("div", "msg assistant");
    box.append(el("div", "msg-role", "assistant"));
    const body = el("div", "msg-body streaming");
    box.append(body);
    msg = { box, body, completed: false };
    block.messages.set(id, msg);
    place(block, box, prepend);
  }
  return msg;
}

function messageDelta(env, block, prepend) {
  const msg = msgFor(block, String(env.data.message_id ?? ""), prepend);
  if (msg.completed) return null; // an older delta of a message already shown whole
  const node = ev(env, "span", "delta");
  node.textContent = env.data.text ?? "";
  if (prepend) msg.body.prepend(node);
  else msg.body.append(node);
  return node;
}

function messageCompleted(env, block, prepend) {
  const d = env.data;
  const msg = msgFor(block, String(d.message_id ?? ""), prepend);
  msg.completed = true;
  msg.body.classList.remove("streaming");
  let node;
  if (d.text) {
    node = renderMarkdown(d.text);
    node.classList.add("ev");
    node.dataset.seq = String(env.seq);
    node.dataset.type = env.type;
  } else {
    const calls = Array.isArray(d.tool_calls) ? d.tool_calls.length : 0;
    node = line(env, "assistant", calls ? `asked for ${calls} tool call(s)` : "(no text)", "muted");
  }
  msg.body.replaceChildren(node);
  return node;
}

function toolEvent(env) {
  const d = env.data;
  const isResult = env.type === "tool.result";
  const node = ev(env, "details", `tool ${isResult ? "tool-result" : "tool-call"}`);
  if (isResult && d.is_error) node.classList.add("is-error");
  const summary = el("summary");
  summary.append(el("span", "ev-label", isResult ? "tool result" : "tool call"), " ",
    el("code", "", d.name ?? "?"));
  if (d.requires_approval) summary.append(" ", el("span", "badge", "needs approval"));
  if (isResult && d.is_error) summary.append(" ", el("span", "badge", "error"));
  if (d.edited) summary.append(" ", el("span", "badge", "edited"));
  node.append(summary);
  const value = isResult ? d.output : d.arguments;
  if (typeof value === "string") {
    let parsed;
    try { parsed = /^\s*[[{]/.test(value) ? JSON.parse(value) : undefined; } catch { /* text */ }
    if (parsed !== undefined) node.append(renderJson(parsed));
    else {
      const pre = el("pre", "tool-output");
      pre.append(renderAnsi(value));
      node.append(pre);
    }
  } else {
    node.append(renderJson(value ?? null));
  }
  return node;
}

function outputDisplay(env, block, ctx) {
  const d = env.data;
  if (d.truncated) {
    const node = line(env, "output", "too large to show inline");
    const link = payloadLink(env, ctx);
    if (link) node.append(" ", link);
    return node;
  }
  const mime = renderMime(d.data, { artifacts: d.artifacts, artifactUrl: ctx.artifactUrl });
  if (d.output_type === "update_display_data" && d.display_id) {
    const target = block.displays.get(d.display_id);
    if (target?.isConnected) {
      target.replaceChildren(...target.querySelectorAll(":scope > .out-label"), mime);
      return line(env, "display updated", String(d.display_id));
    }
  }
  const node = ev(env, "div", "output");
  if (d.cell != null) node.dataset.cell = String(d.cell);
  if (d.output_type === "execute_result") {
    node.append(el("div", "out-label muted", `Out[${d.execution_count ?? " "}]`));
  }
  node.append(mime);
  if (d.display_id) block.displays.set(d.display_id, node);
  return node;
}

function outputError(env) {
  const d = env.data;
  const node = ev(env, "div", "output-error");
  const title = el("div", "error-title");
  title.append(el("strong", "", d.ename ?? "Error"), `: ${d.evalue ?? ""}`);
  node.append(title);
  const trace = Array.isArray(d.traceback) ? d.traceback.join("\n") : String(d.traceback ?? "");
  if (trace) {
    const pre = el("pre", "terminal");
    pre.append(renderAnsi(trace));
    node.append(pre);
  }
  return node;
}

function cellStarted(env) {
  const d = env.data;
  const node = ev(env, "div", "cell");
  node.append(el("div", "out-label muted", `In [cell ${d.cell ?? "?"}]${d.language && d.language !== "python" ? ` ${d.language}` : ""}`));
  node.append(el("pre", "cell-code", d.code ?? ""));
  return node;
}

function taskStatus(env) {
  const d = env.data;
  const terminal = ["succeeded", "failed", "cancelled", "timed_out"].includes(d.status);
  if (!terminal) {
    const node = line(env, "status", `${d.status}${d.phase ? ` (${d.phase})` : ""}`);
    node.classList.add("trace");
    return node;
  }
  const node = ev(env, "div", `status-line status-${d.status}`);
  const head = el("div");
  const badge = el("span", "badge", d.status);
  badge.dataset.status = d.status;
  head.append(badge);
  if (d.error?.message) head.append(" ", el("span", "status-error", `${d.error.code ? `${d.error.code}: ` : ""}${d.error.message}`));
  node.append(head);
  if (d.result != null && !(typeof d.result === "object" && !Object.keys(d.result).length)) {
    const details = el("details", "result");
    details.append(el("summary", "", "Result"), renderJson(d.result));
    node.append(details);
  }
  return node;
}

function debugPaused(env, ctx) {
  const d = env.data;
  const node = ev(env, "div", "notice debug-paused");
  node.setAttribute("role", "status");
  const what = [d.step_kind, d.name ? `“${d.name}”` : d.step_id].filter(Boolean).join(" ");
  node.append(el("strong", "", "Paused"), ` before ${what || "the next step"}`,
    d.reason ? ` (${d.reason})` : "", ".");
  if (!ctx.readOnly) node.append(" ", el("span", "muted", "Continue, step or abort in the debugger panel."));
  return node;
}

function compact(env, ctx) {
  const d = env.data ?? {};
  switch (env.type) {
    case "message.user": {
      const node = ev(env, "div", "msg user");
      node.append(el("div", "msg-role", "user"), el("div", "msg-body", d.text ?? d.message ?? ""));
      return node;
    }
    case "cell.finished":
      return line(env, `cell ${d.cell ?? "?"}`, [d.status, formatDuration(d.duration_ms)].filter(Boolean).join(" · "));
    case "kernel.started":
      return line(env, "kernel started", formatDuration(d.duration_ms));
    case "kernel.died":
      return line(env, "kernel died", d.reason ?? "", "event-error");
    case "file.changed":
      return line(env, "file changed", d.path ?? "");
    case "artifact.created": {
      const node = line(env, "artifact");
      if (d.id) node.append(" ", artifactLink(d, ctx.artifactUrl));
      return node;
    }
    case "log": {
      const { level = "info", message = "", ...rest } = d;
      const node = line(env, level, String(message), `log log-${level}`);
      if (level === "debug") node.classList.add("trace");
      delete rest.truncated; delete rest.preview; delete rest.artifact;
      if (Object.keys(rest).length) {
        const details = el("details", "inline");
        details.append(el("summary", "", "details"), renderJson(rest));
        node.append(" ", details);
      }
      return node;
    }
    case "usage": {
      const bits = Object.entries(d).filter(([k]) => k !== "step" && k !== "cell")
        .map(([k, v]) => `${k.replace(/_/g, " ")} ${typeof v === "number" ? +v.toFixed(6) : v}`);
      return line(env, "usage", bits.join(" · "));
    }
    case "error":
      return line(env, "error", `${d.code ? `${d.code}: ` : ""}${d.message ?? ""}`, "event-error");
    case "step.started":
      return line(env, "step ▸", [d.kind ?? d.step_kind, d.name ?? d.step_id].filter(Boolean).join(" "));
    case "step.finished":
      return line(env, "step ✓", [d.name ?? d.step_id, d.status, formatDuration(d.duration_ms)].filter(Boolean).join(" · "));
    case "debug.resumed":
      return line(env, "resumed", [d.action, d.step_id, d.by ? `by ${d.by}` : ""].filter(Boolean).join(" · "));
    case "llm.request": {
      const node = ev(env, "details", "compact");
      node.append(el("summary", "", `model request: ${d.model ?? ""} (${(d.messages ?? []).length} messages)`), renderJson(d));
      return node;
    }
    case "output.clear":
      return line(env, "output cleared", d.cell != null ? `cell ${d.cell}` : "");
    default: {
      const node = line(env, env.type, JSON.stringify(d).slice(0, 300), "unknown");
      node.querySelector(".ev-text")?.classList.add("json-line");
      return node;
    }
  }
}

/**
 * Render `env` into `block` ({events, procs, messages, displays}) and return its `.ev` element
 * (or null). `prepend`: the event is older than everything in the block (history loaded with
 * "Load earlier", processed newest first). `ctx`: {artifactUrl(id), readOnly}.
 */
export function renderEvent(env, block, ctx, prepend = false) {
  const type = env.type;
  let node;
  if (type === "process.stdout" || type === "process.stderr") return processChunk(env, block, ctx, prepend);
  if (type === "process.exit") return processExit(env, block, prepend);
  if (type === "process.started" || type === "process.output_truncated") return processOther(env, block, prepend);
  if (type === "message.delta") return messageDelta(env, block, prepend);
  if (type === "message.completed") return messageCompleted(env, block, prepend);
  if (type === "output.clear" && !prepend) {
    for (const out of block.events.querySelectorAll(`.output[data-cell="${CSS.escape(String(env.data.cell))}"]`)) {
      out.hidden = true;
    }
  }
  if (type === "tool.call" || type === "tool.result") node = toolEvent(env);
  else if (type === "output.display") node = outputDisplay(env, block, ctx);
  else if (type === "output.error") node = outputError(env);
  else if (type === "cell.started") node = cellStarted(env);
  else if (type === "task.status") node = taskStatus(env);
  else if (type === "debug.paused") node = debugPaused(env, ctx);
  else node = compact(env, ctx);
  if (!node) return null;
  const link = type !== "output.display" ? payloadLink(env, ctx) : null;
  if (link) node.append(" ", link);
  return place(block, node, prepend);
}

/** Remove an event element and any container it leaves empty; `block` forgets them. */
export function removeEvent(node, block) {
  const proc = node.closest(".proc");
  const msg = node.closest(".msg");
  node.remove();
  if (proc && !proc.querySelector(".ev")) {
    proc.remove();
    block.procs.delete(proc.dataset.process);
  }
  if (msg && !msg.querySelector(".ev")) msg.remove();
}
