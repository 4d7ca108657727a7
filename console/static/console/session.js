// The session page (templates/console/session.html): the timeline of tasks and events, the
// live WebSocket stream with resume, the input box and cancel.
//
// Contract with the side panels (files.js, debugger.js), on `document`:
// - `console:event`, detail = one event envelope {seq, session_id, task_id, type, ts, data}:
//   every event once, in increasing seq order: the newest page loaded at start, then each
//   live event (events loaded later with "Load earlier" are older and are not re-dispatched);
// - `console:task-selected`, detail = {task, source ("user" | "start")}: the task as GET /api/v1/tasks/{id} returns it,
//   when the user selects a task (click or keyboard), creates one, and at start (the newest).
// `window.consoleStream` is the live stream (WsStream: `.socket`, `.lastSeq`, `.state`).

import { api, clearError, flash, pageConfig, showError } from "./api.js";
import { ConnectionIndicator, WsStream } from "./stream.js";
import { ACTIVE, emit, pageTimeline } from "./timeline.js";

const config = pageConfig();
const $ = (id) => document.getElementById(id);
const DEBUG_EVERY_STEP = { debug: { breakpoints: [{ step_kind: "", name: "" }] } };

let stream = null;

const { timeline, eventsPage } = pageTimeline(config, {
  fetchTask: (id) => api("GET", `${config.task_api}${encodeURIComponent(id)}`),
  cancelTask: config.read_only ? null
    : (id) => api("POST", `${config.task_api}${encodeURIComponent(id)}/cancel`),
  onSelect: selectTask,
  readOnly: Boolean(config.read_only),
});

async function selectTask(taskId, source = "user") {
  const asOf = stream?.lastSeq ?? 0;
  try {
    const task = await api("GET", `${config.task_api}${encodeURIComponent(taskId)}`);
    timeline.setTask(task, asOf);
    if (timeline.selected === taskId) emit("console:task-selected", { task, source });
  } catch (err) {
    showError($("timeline-error"), err);
  }
}

// Input box ---------------------------------------------------------------------------------

function localError(box, form, message, field, code = "invalid_input") {
  showError(box, { message, code, details: { fields: field ? { [field]: [message] } : {} } }, form);
}

/** The request the form describes: [url, body], or null (an error is shown). */
function readForm(form, box) {
  const debug = form.querySelector("[data-debug-run]")?.checked;
  const runConfig = debug ? structuredClone(DEBUG_EVERY_STEP) : {};
  if (config.input?.mode === "message") {
    const area = form.querySelector("[data-input=message]");
    if (!area.value.trim()) {
      localError(box, form, "Write a message first.", "message");
      return null;
    }
    return [config.messages_api, { message: area.value, config: runConfig }];
  }
  const input = {};
  for (const area of form.querySelectorAll("[data-input-field]")) {
    if (area.value !== "") input[area.dataset.inputField] = area.value;
  }
  const raw = form.querySelector("[data-input-json]")?.value.trim();
  if (raw) {
    let parsed;
    try {
      parsed = JSON.parse(raw);
    } catch (err) {
      localError(box, form, `The JSON input is not valid JSON (${err.message}).`, "input", "invalid_json");
      return null;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      localError(box, form, "The JSON input must be an object, e.g. {\"key\": \"value\"}.", "input", "invalid_json");
      return null;
    }
    Object.assign(input, parsed);
  }
  for (const area of form.querySelectorAll("[data-input-field][data-required]")) {
    const name = area.dataset.inputField;
    if (input[name] == null || input[name] === "") {
      localError(box, form, `${name} is required.`, `input.${name}`);
      return null;
    }
  }
  const taskType = form.querySelector("[data-task-type]")?.value || "run";
  return [config.tasks_api, { task_type: taskType, input, config: runConfig }];
}

function bindForm(form) {
  const box = $("input-error");
  const button = form.querySelector('button[type="submit"]');
  const firstField = () => form.querySelector("textarea");
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    clearError(box, form);
    const request = readForm(form, box);
    if (!request) return;
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    const asOf = stream?.lastSeq ?? 0; // events received during the request are newer
    try {
      const task = await api("POST", request[0], request[1]);
      timeline.addTask(task, asOf);
      timeline.select(task.id);
      form.querySelectorAll("[data-input-field], [data-input=message], [data-input-json]")
        .forEach((area) => { area.value = ""; });
      flash(`Task ${task.task_type} queued${task.queue_position ? ` (${task.queue_position} ahead)` : ""}.`);
      firstField()?.focus();
    } catch (err) {
      showError(box, err, form);
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}

// Start -------------------------------------------------------------------------------------

async function start() {
  const indicator = new ConnectionIndicator($("conn"), () => stream?.reconnectNow());
  try {
    // The newest tasks: their status, type and input for the block headers.
    const page = await api("GET", `${config.tasks_api}?limit=100`);
    for (const task of [...page.results].reverse()) timeline.setTask(task, config.last_seq);
  } catch (err) {
    showError($("timeline-error"), err);
  }
  const history = await timeline.loadTail(config.last_seq);
  history.forEach((env) => emit("console:event", env));
  stream = new WsStream({
    path: config.ws_path,
    after: timeline.hi,
    fetchPage: eventsPage,
    indicator,
    deliver: (env) => {
      emit("console:event", env);
      timeline.push(env);
    },
  });
  window.consoleStream = stream;
  stream.start();
  const tasks = [...timeline.tasks.values()].map((entry) => entry.task)
    .filter((task) => task.created_at)
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  const first = tasks.find((task) => ACTIVE.has(task.status)) ?? tasks[0];
  if (first && timeline.blocks.has(first.id)) timeline.select(first.id, "start");
}

const form = $("task-form");
if (form) bindForm(form);
start();
