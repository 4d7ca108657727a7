// The debugger panel of the session page (templates/console/_debugger.html, docs/debugger.md).
// It shows the step tree of one task (the one selected in the task list, else the newest) from
// GET /api/v1/tasks/{id}/steps, re-read whenever the task's events change the trace, and when
// the run is paused in the debugger, the pending step with Continue, Step, Abort and "Continue
// with edited input" (POST /tasks/{id}/debug/<action>), a Pause button while it runs (POST
// /tasks/{id}/pause) and "Fork from this step" on finished tasks (POST /tasks/{id}/fork).
// The server's state is the truth: events only say when to read it again (and show a pause at
// once). Hidden in read-only mode (the share page, viewers).

import { api, clearError, flash, h, pageConfig, showError, when } from "./api.js";
import { formatDuration, renderJson } from "./render.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
// Events the step trace is projected from (debugger.services.STEP_EVENT_TYPES) and the
// debugger's own: any of them for the shown task means the panel should be read again.
const TRACE_EVENTS = new Set([
  "task.status", "step.started", "step.finished", "cell.started", "cell.finished",
  "output.error", "process.started", "process.exit", "tool.call", "tool.result",
  "message.completed", "usage", "llm.request", "debug.paused", "debug.resumed",
]);
const REFRESH_DELAY_MS = 250;
const COMMAND_RECHECK_MS = 1500; // a command is applied within about a second
const BUSY_LIMIT_MS = 15000; // buttons come back even if the run never answers

const panel = document.getElementById("debugger-panel");
if (panel) init(panel);

function init(panel) {
  const config = pageConfig();
  if (config.read_only) {
    panel.hidden = true;
    return;
  }
  const $ = (id) => document.getElementById(id);
  const els = {
    task: $("dbg-task"), empty: $("dbg-empty"), error: $("dbg-error"), pause: $("dbg-pause"),
    follow: $("dbg-follow"), paused: $("dbg-paused"), step: $("dbg-paused-step"),
    kind: $("dbg-paused-kind"), name: $("dbg-paused-name"), reason: $("dbg-paused-reason"),
    form: $("dbg-form"), input: $("dbg-input"), commandError: $("dbg-command-error"),
    buttons: [...panel.querySelectorAll(".dbg-actions button")], outcome: $("dbg-outcome"),
    tree: $("dbg-tree"), hint: $("dbg-input-hint"),
  };
  const byId = { continue: $("dbg-continue"), step: $("dbg-step"), edited: $("dbg-continue-edited") };

  let taskId = null;
  let task = null; // the task as GET /api/v1/tasks/{id} returns it
  let steps = []; // the step tree's roots
  let paused = null; // the pending step (pending_action) while paused in the debugger
  let pendingKey = null; // which pause the textarea was filled for (keeps the user's edits)
  let userSelected = false; // false: follow the newest task of the session
  let awaiting = null; // the action the user sent; the next pause gets focus on its button
  let busyTimer = null;
  let refreshTimer = null;
  let settleTries = 0;
  let refreshDue = 0;
  let generation = 0; // answers to reads started before a newer read or a pause event are dropped
  const seen = new Set(); // task ids met in the event stream, in order of first appearance
  const open = new Set(); // step ids whose details are open (kept across re-renders)
  const forks = new Map(); // step id → the fork made from it (kept across re-renders)

  const taskApi = (suffix = "") => `/api/v1/tasks/${encodeURIComponent(taskId)}${suffix}`;

  /** Show `id`'s task; `selected` when the user chose it (stop following the newest). */
  function show(id, { selected = false, data = null } = {}) {
    if (selected) userSelected = true;
    els.follow.hidden = !userSelected;
    if (id === taskId) {
      if (data) { task = data; render(); }
      scheduleRefresh(0);
      return;
    }
    taskId = id;
    task = data;
    steps = [];
    paused = null;
    pendingKey = null;
    awaiting = null;
    open.clear();
    forks.clear();
    clearError(els.error);
    setBusy(false);
    render();
    scheduleRefresh(selected ? 0 : REFRESH_DELAY_MS);
  }

  /** Read the task and its trace again in `delay` ms, or sooner if a read is due sooner (a
   * busy run's events must not keep postponing it). */
  function scheduleRefresh(delay = REFRESH_DELAY_MS) {
    const due = Date.now() + delay;
    if (refreshTimer && refreshDue <= due) return;
    clearTimeout(refreshTimer);
    refreshDue = due;
    refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, delay);
  }

  async function refresh() {
    if (!taskId) return;
    const mine = ++generation;
    const id = taskId;
    let fresh, trace;
    try {
      [fresh, trace] = await Promise.all([api("GET", taskApi()), api("GET", taskApi("/steps"))]);
    } catch (err) {
      if (mine !== generation || id !== taskId) return;
      const active = document.activeElement; // a background read: the focus stays put
      showError(els.error, err);
      active?.focus();
      return;
    }
    if (mine !== generation || id !== taskId) return;
    clearError(els.error);
    task = fresh;
    steps = trace.steps ?? [];
    // The trace is written after the task's final status event: a finished task whose steps
    // still read "running" is read again shortly (a few times at most).
    const stale = TERMINAL.has(task.status) && steps.some((s) => s.status === "running");
    settleTries = stale ? settleTries + 1 : 0;
    if (stale && settleTries <= 5) scheduleRefresh(400 * settleTries);
    const pending = task.pending_action;
    setPaused(task.status === "waiting" && pending?.kind === "debug" ? pending : null);
    render();
  }

  function setPaused(next) {
    paused = next;
    const key = paused ? JSON.stringify([paused.step_id, paused.reason, paused.input]) : null;
    if (key !== pendingKey) {
      pendingKey = key;
      setBusy(false);
      if (paused) {
        els.input.value = JSON.stringify(paused.input ?? null, null, 2);
        clearError(els.commandError, els.form);
      }
    }
  }

  // Rendering --------------------------------------------------------------------------------

  function render() {
    els.empty.hidden = Boolean(taskId);
    renderHeader();
    renderPaused();
    renderOutcome();
    renderTree();
  }

  function renderHeader() {
    if (!taskId) {
      els.task.replaceChildren();
      els.pause.hidden = true;
      return;
    }
    const status = task?.status ?? "loading";
    const phase = task?.current_phase && !TERMINAL.has(status) ? h("span", { class: "muted" }, task.current_phase) : "";
    els.task.replaceChildren(
      userSelected ? "Task " : "Newest task ", h("code", { title: taskId }, taskId.slice(0, 8)), " ",
      h("span", { class: "badge", "data-status": status }, status), " ", phase);
    els.pause.hidden = !task || paused || !["queued", "running"].includes(task.status);
  }

  function renderPaused() {
    els.paused.hidden = !paused;
    if (!paused) return;
    els.step.textContent = paused.step_id ?? "";
    els.kind.textContent = paused.step_kind ?? "";
    els.name.textContent = paused.name ?? "";
    els.reason.textContent = { breakpoint: "a breakpoint", step: "stepping", pause: "a pause request" }[paused.reason] ?? paused.reason ?? "";
    const editable = paused.editable !== false;
    els.input.readOnly = !editable;
    byId.edited.hidden = !editable;
    els.hint.textContent = editable ? "Continue and Step keep the original input." : "This step's input cannot be edited.";
    if (awaiting && !els.buttons[0].disabled) {
      (awaiting === "step" ? byId.step : byId.continue).focus();
      awaiting = null;
    }
  }

  function renderOutcome() {
    const done = task && TERMINAL.has(task.status);
    els.outcome.hidden = !done;
    if (!done) return els.outcome.replaceChildren();
    const parts = [h("h3", {}, "Outcome")];
    if (task.error) {
      parts.push(h("p", { class: "field-error" }, task.error.message ?? "The task failed.",
        task.error.code ? [" ", h("code", { class: "error-code" }, task.error.code)] : null));
    }
    if (task.result !== null && task.result !== undefined) parts.push(h("div", { class: "dbg-result" }, renderJson(task.result)));
    els.outcome.replaceChildren(...parts);
  }

  function renderTree() {
    if (!taskId) return els.tree.replaceChildren();
    // A re-render replaces the items: the focus comes back to the same control, else to the
    // summary of the step it was in.
    const focused = document.activeElement;
    const inTree = els.tree.contains(focused);
    const focusedStep = inTree ? focused.closest("[data-step-id]")?.dataset.stepId : null;
    const focusId = inTree ? focused.dataset.focusId : null;
    if (!steps.length) {
      els.tree.replaceChildren(h("p", { class: "muted" }, task ? "No steps recorded yet." : "Loading steps…"));
      return;
    }
    els.tree.replaceChildren(
      h("h3", { id: "dbg-tree-title" }, "Steps"),
      h("ul", { class: "step-tree", "aria-labelledby": "dbg-tree-title" }, steps.map(stepItem)));
    if (focusedStep) {
      const item = els.tree.querySelector(`[data-step-id="${CSS.escape(focusedStep)}"]`);
      const same = focusId && els.tree.querySelector(`[data-focus-id="${CSS.escape(focusId)}"]`);
      (same || item?.querySelector("summary"))?.focus();
    }
  }

  function stepItem(node) {
    const summary = h("summary", {},
      h("span", { class: "badge", "data-status": node.status }, node.status), " ",
      h("span", { class: "step-kind" }, node.kind), " ",
      h("strong", { class: "step-name" }, node.name || node.step_id), " ",
      h("span", { class: "muted step-duration" }, duration(node)));
    const body = h("div", { class: "step-body" });
    const details = h("details", { "data-step-id": node.step_id, "data-status": node.status }, summary, body);
    const fill = () => { if (!body.childElementCount) body.append(...stepBody(node)); };
    if (open.has(node.step_id)) { details.open = true; fill(); }
    details.addEventListener("toggle", () => {
      if (details.open) { open.add(node.step_id); fill(); } else open.delete(node.step_id);
    });
    const children = node.children ?? [];
    return h("li", {}, details, children.length ? h("ul", {}, children.map(stepItem)) : null);
  }

  function stepBody(node) {
    const facts = [["Step id", h("code", {}, node.step_id)]];
    if (node.started_at) facts.push(["Started", when(node.started_at)]);
    if (node.duration_ms != null) facts.push(["Duration", duration(node)]);
    if (node.prompt_tokens || node.completion_tokens) facts.push(["Tokens", `${node.prompt_tokens ?? 0} in, ${node.completion_tokens ?? 0} out`]);
    if (node.cost_usd != null) facts.push(["Cost", `$${node.cost_usd.toFixed(4)}`]);
    const parts = [h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))];
    for (const [label, value] of [["Input", node.input], ["Output", node.output], ["Error", node.error]]) {
      if (value === null || value === undefined) continue;
      parts.push(h("h4", {}, label), valueView(value));
    }
    if (task && TERMINAL.has(task.status) && node.kind !== "agent") parts.push(forkControl(node));
    return parts;
  }

  function valueView(value) {
    const artifact = value && typeof value === "object" ? value.artifact : null;
    if (artifact?.id) {
      return h("div", {}, renderJson(value.preview ?? null), h("a", {
        href: `/api/v1/artifacts/${encodeURIComponent(artifact.id)}/content`, download: artifact.name ?? "",
      }, `The whole value (${artifact.size ?? "?"} bytes)`));
    }
    return renderJson(value);
  }

  function forkControl(node) {
    const box = h("div", { class: "error-box", role: "alert", tabindex: "-1", hidden: true });
    const result = h("p", { class: "dbg-fork-result", "aria-live": "polite" });
    const button = h("button", { type: "button", class: "small", "data-focus-id": `fork-${node.step_id}` }, "Fork from this step");
    const showFork = (fork) => result.replaceChildren(`Forked: task ${fork.id.slice(0, 8)} (${fork.replay_mode}). `,
      h("a", { href: `/console/sessions/${encodeURIComponent(fork.session_id)}/`, "data-focus-id": `forked-${node.step_id}` }, "Open its session"));
    if (forks.has(node.step_id)) showFork(forks.get(node.step_id)); // kept across re-renders
    button.addEventListener("click", async () => {
      clearError(box);
      button.disabled = true;
      const current = () => els.tree.querySelector(`[data-focus-id="fork-${CSS.escape(node.step_id)}"]`)?.closest(".dbg-fork");
      try {
        const fork = await api("POST", taskApi("/fork"), { step_id: node.step_id });
        forks.set(node.step_id, fork);
        renderTree();
        els.tree.querySelector(`[data-focus-id="forked-${CSS.escape(node.step_id)}"]`)?.focus();
      } catch (err) {
        // The tree may have been re-rendered meanwhile: the error goes where the control is now.
        showError(current()?.querySelector(".error-box") ?? box, err);
      } finally {
        button.disabled = false;
      }
    });
    return h("div", { class: "dbg-fork" }, button, box, result);
  }

  // Commands ---------------------------------------------------------------------------------

  function setBusy(busy) {
    clearTimeout(busyTimer);
    for (const button of els.buttons) button.disabled = busy;
    els.input.setAttribute("aria-busy", busy ? "true" : "false");
    if (busy) busyTimer = setTimeout(() => setBusy(false), BUSY_LIMIT_MS);
  }

  async function command(action, edited) {
    if (!taskId || !paused) return;
    clearError(els.commandError, els.form);
    let body;
    if (edited) {
      try {
        body = { input: JSON.parse(els.input.value) };
      } catch (err) {
        const slot = els.form.querySelector('[data-field="input"] .field-error');
        slot.textContent = `Not valid JSON: ${err.message}`;
        els.input.setAttribute("aria-invalid", "true");
        els.input.focus();
        return;
      }
    }
    if (action === "abort" && !window.confirm("Abort this run? The task ends cancelled.")) return;
    setBusy(true);
    try {
      await api("POST", taskApi(`/debug/${action}`), body);
    } catch (err) {
      setBusy(false);
      showError(els.commandError, err, els.form);
      return;
    }
    awaiting = action === "abort" ? null : action;
    if (action === "abort") flash("Aborting the run…");
    els.task.focus(); // the paused section goes away; the status line says what happens next
    setTimeout(() => scheduleRefresh(0), COMMAND_RECHECK_MS); // in case no event comes
  }

  for (const button of els.buttons) {
    if (button.type === "submit") continue;
    button.addEventListener("click", () => command(button.dataset.action, false));
  }
  els.form.addEventListener("submit", (e) => { e.preventDefault(); command("continue", true); });
  els.input.addEventListener("input", () => {
    els.input.removeAttribute("aria-invalid");
    els.form.querySelector('[data-field="input"] .field-error').textContent = "";
  });

  els.pause.addEventListener("click", async () => {
    clearError(els.error);
    els.pause.disabled = true;
    try {
      await api("POST", taskApi("/pause"));
      flash("The run pauses after its current step.");
      awaiting = "continue";
    } catch (err) {
      showError(els.error, err);
    } finally {
      els.pause.disabled = false;
    }
    setTimeout(() => scheduleRefresh(0), COMMAND_RECHECK_MS);
  });

  els.follow.addEventListener("click", () => {
    userSelected = false;
    els.follow.hidden = true;
    const newest = [...seen].pop();
    if (newest) show(newest);
    else followNewestFromApi();
    els.task.focus();
  });

  // Page events ------------------------------------------------------------------------------

  document.addEventListener("console:task-selected", (e) => {
    const selected = e.detail?.task;
    // A selection the page made by itself (`source: "start"`, the newest task) keeps following.
    if (selected?.id) show(selected.id, { selected: e.detail.source !== "start", data: selected });
  });

  document.addEventListener("console:event", (e) => {
    const event = e.detail ?? {};
    const id = event.task_id;
    if (!id) return;
    if (!seen.has(id)) {
      seen.add(id);
      if (!userSelected && id !== taskId) return show(id);
    }
    if (id !== taskId) return;
    if (event.type === "debug.paused") { // show the pause now; the refresh confirms it
      generation += 1;
      setPaused({ kind: "debug", ...event.data });
      render();
    } else if (event.type === "debug.resumed" && paused?.step_id === event.data?.step_id) {
      generation += 1;
      paused = null;
      render();
    } else if (event.type === "task.status" && task) {
      task = { ...task, status: event.data?.status ?? task.status, current_phase: event.data?.phase ?? task.current_phase };
      renderHeader();
    }
    if (TRACE_EVENTS.has(event.type)) scheduleRefresh();
  });

  /** Before (or without) any event: the session's newest task. */
  async function followNewestFromApi() {
    if (!config.session_id) return;
    try {
      const page = await api("GET", `/api/v1/sessions/${encodeURIComponent(config.session_id)}/tasks?limit=1`);
      const newest = page.results?.[0];
      if (newest && !userSelected && !taskId) show(newest.id, { data: newest });
    } catch (err) {
      const active = document.activeElement;
      showError(els.error, err);
      active?.focus();
    }
  }

  render();
  followNewestFromApi();
}

function duration(step) {
  if (step.duration_ms == null) return step.status === "running" || step.status === "waiting" ? step.status : "";
  return formatDuration(step.duration_ms);
}
