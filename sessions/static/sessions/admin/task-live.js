// The live part of a task's admin page (templates/admin/agent_sessions/task/change_form.html):
// polls <pk>/timeline/?after=<seq> for the task's status and new events until the task has
// finished, and sends the Cancel / Retry / Re-run / Force-kill forms with fetch so the answer
// shows in place (a retry or re-run opens the new task's page). Without this script the forms
// still work as plain POSTs.
"use strict";

(() => {
  const configNode = document.getElementById("task-live-config");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
  const RETRYABLE = new Set(config.retryable || []);
  const MAX_ITEMS = 1000;
  const RETRY_MS = 5000;

  const statusNode = document.getElementById("task-live-status");
  const phaseNode = document.getElementById("task-live-phase");
  const durationNode = document.getElementById("task-live-duration");
  const messageNode = document.getElementById("task-live-message");
  const errorNode = document.getElementById("task-live-error");
  const timeline = document.getElementById("task-live-timeline");

  let after = null; // null: ask for the newest events first
  let timer = null;
  let status = config.status;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function showError(text) {
    errorNode.textContent = text;
    errorNode.hidden = !text;
  }

  function showMessage(text, level) {
    messageNode.textContent = text;
    messageNode.className = `task-live-message ${level || "info"}`;
    messageNode.hidden = !text;
  }

  function updateTools() {
    for (const form of document.querySelectorAll("form.task-tool")) {
      const when = form.dataset.enabledWhen;
      const enabled =
        when === "always" ||
        (when === "active" && !TERMINAL.has(status)) ||
        (when === "retryable" && RETRYABLE.has(status));
      const button = form.querySelector("button");
      if (button && !button.dataset.busy) button.disabled = !enabled;
    }
  }

  function setTask(task) {
    status = task.status;
    statusNode.textContent = task.status;
    statusNode.dataset.status = task.status;
    statusNode.className = `status status-${task.status}`;
    let phase = task.phase || "—";
    if (task.cancel_requested && !TERMINAL.has(task.status)) phase += " (cancel requested)";
    phaseNode.textContent = phase;
    durationNode.textContent = task.duration_s === null ? "—" : `${task.duration_s} s`;
    updateTools();
  }

  function addEvents(events) {
    if (!events.length) {
      if (!timeline.querySelector("li[data-seq]")) {
        timeline.replaceChildren(emptyItem("No events yet."));
      }
      return;
    }
    const empty = timeline.querySelector(".task-timeline-empty");
    if (empty) empty.remove();
    for (const event of events) {
      const item = document.createElement("li");
      item.dataset.seq = String(event.seq);
      item.className = `event event-${event.type.replace(/[^a-z0-9]+/gi, "-")}`;
      const seq = document.createElement("span");
      seq.className = "event-seq";
      seq.textContent = `#${event.seq}`;
      const time = document.createElement("time");
      time.dateTime = event.ts;
      time.textContent = new Date(event.ts).toLocaleTimeString();
      const type = document.createElement("code");
      type.className = "event-type";
      type.textContent = event.type;
      const summary = document.createElement("span");
      summary.className = "event-summary";
      summary.textContent = event.summary;
      item.append(seq, " ", time, " ", type, " ", summary);
      timeline.append(item);
    }
    while (timeline.children.length > MAX_ITEMS) timeline.firstElementChild.remove();
  }

  function emptyItem(text) {
    const item = document.createElement("li");
    item.className = "task-timeline-empty";
    item.textContent = text;
    return item;
  }

  async function poll() {
    const url = new URL(config.timeline_url, window.location.href);
    if (after !== null) url.searchParams.set("after", String(after));
    let body;
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) {
        let text = `The timeline could not be loaded (HTTP ${response.status}).`;
        try {
          const problem = await response.json();
          if (problem.error && problem.error.message) text = problem.error.message;
        } catch (_) { /* not JSON: keep the status text */ }
        showError(text);
        schedule(RETRY_MS);
        return;
      }
      body = await response.json();
    } catch (_) {
      showError("The server cannot be reached; retrying.");
      schedule(RETRY_MS);
      return;
    }
    showError("");
    setTask(body.task);
    addEvents(body.events);
    after = body.next_after;
    if (body.more) schedule(0);
    else if (!body.task.terminal) schedule(config.poll_ms);
    // A finished task's events are all in (it is read before its events): stop polling.
  }

  function csrfToken(form) {
    const field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  async function submitTool(event) {
    const form = event.currentTarget;
    const button = form.querySelector("button");
    event.preventDefault();
    button.dataset.busy = "1";
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
        body: new FormData(form),
        credentials: "same-origin",
      });
      let body = {};
      try {
        body = await response.json();
      } catch (_) { /* an HTML error page */ }
      if (!response.ok) {
        const text = (body.error && body.error.message) || `The action failed (HTTP ${response.status}).`;
        showMessage(text, "error");
        return;
      }
      if (body.redirect) {
        window.location.assign(body.redirect);
        return;
      }
      showMessage(body.message || "Done.", body.level);
      schedule(0); // show what the action changed, and keep polling while the task runs
    } catch (_) {
      showMessage("The server cannot be reached; the action was not sent.", "error");
    } finally {
      delete button.dataset.busy;
      button.removeAttribute("aria-busy");
      updateTools();
    }
  }

  for (const form of document.querySelectorAll("form.task-tool")) {
    form.addEventListener("submit", submitTool);
  }
  updateTools();
  poll();
})();
