// The read-only share view (templates/console/shared.html): the same timeline as the session
// page, fed by the share link's events API and its SSE stream (no sign-in; the token in the
// URLs is the credential). Dispatches the same `console:event` and `console:task-selected`
// events as session.js (the task detail there is the share summary's task object).
// `window.consoleStream` is the live stream (SseStream: `.source`, `.lastSeq`, `.state`).

import { api, pageConfig, showError } from "./api.js";
import { ConnectionIndicator, SseStream } from "./stream.js";
import { emit, pageTimeline } from "./timeline.js";

const config = pageConfig();
const $ = (id) => document.getElementById(id);

const { timeline, eventsPage } = pageTimeline(config, {
  readOnly: true,
  onSelect: (taskId) => emit("console:task-selected", { task: timeline.tasks.get(taskId)?.task }),
});

async function start() {
  let lastSeq = config.last_seq;
  try {
    const summary = await api("GET", config.summary_api);
    lastSeq = Math.max(lastSeq, summary.last_seq ?? 0);
    for (const task of summary.tasks ?? []) timeline.setTask(task, config.last_seq);
  } catch (err) {
    showError($("timeline-error"), err);
  }
  const history = await timeline.loadTail(lastSeq);
  history.forEach((env) => emit("console:event", env));
  const stream = new SseStream({
    url: config.stream,
    after: timeline.hi,
    fetchPage: eventsPage,
    probe: () => eventsPage(stream.lastSeq, 1),
    indicator: new ConnectionIndicator($("conn"), () => stream.reconnectNow()),
    deliver: (env) => {
      emit("console:event", env);
      timeline.push(env);
    },
  });
  window.consoleStream = stream;
  stream.start();
}

start();
