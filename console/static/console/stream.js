// The live event stream of a session, over the WebSocket (session page) or Server-Sent Events
// (share view), resuming after every reconnect from the last seq seen (sessions/consumers.py,
// sessions/streaming.py). Every event is delivered once, in seq order: a repeat is dropped,
// and a gap (a seq beyond last + 1, or a heartbeat announcing newer events) is filled from the
// events API before anything after it is delivered. Reconnects back off 1 s, 2 s, 4 s, 8 s,
// then every 10 s; the connection indicator says connected / reconnecting / offline.

const BACKOFF_S = [1, 2, 4, 8, 10];
const BACKFILL_LIMIT = 1000;
// Without any frame for this long (the server sends a heartbeat every ~15 s) the socket is
// considered dead and replaced.
const SILENCE_MS = 45_000;
// WebSocket close codes after which retrying cannot help (sessions/consumers.py).
const FINAL_CLOSES = {
  4401: "Signed out: sign in again to follow this session.",
  4403: "Your credential may not read this session.",
  4404: "This session no longer exists or is not yours.",
  4400: "The stream refused a request.",
};
// The SSE stream names each event by its type; EventSource only delivers the names it listens
// to. An unlisted type is still never lost: the next event shows a gap and the API fills it.
const SSE_TYPES = [
  "task.status", "message.user", "message.delta", "message.completed", "tool.call", "tool.result",
  "process.started", "process.stdout", "process.stderr", "process.exit", "process.output_truncated",
  "output.display", "output.clear", "output.error", "cell.started", "cell.finished",
  "kernel.started", "kernel.died", "file.changed", "artifact.created", "log", "usage",
  "step.started", "step.finished", "debug.paused", "debug.resumed", "llm.request",
  "runtime.attached", "runtime.displaced", "error",
];

/** The connection indicator (`#conn`: data-state, a text and a "Reconnect now" button). */
export class ConnectionIndicator {
  constructor(root, onRetry) {
    this.root = root;
    this.text = root?.querySelector(".conn-text");
    this.retry = root?.querySelector(".conn-retry");
    this.retry?.addEventListener("click", onRetry);
  }

  set(state, message) {
    if (!this.root) return;
    this.root.dataset.state = state;
    this.text.textContent = message;
    this.retry.hidden = state === "connected" || state === "connecting";
  }
}

class BaseStream {
  /**
   * `options`: after (last seq already shown), fetchPage(after, limit) → {events, last_seq},
   * deliver(envelope), indicator (ConnectionIndicator).
   */
  constructor({ after, fetchPage, deliver, indicator }) {
    this.lastSeq = after;
    this.fetchPage = fetchPage;
    this.deliver = deliver;
    this.indicator = indicator;
    this.held = []; // events past a gap, waiting for the backfill
    this.gapTo = 0;
    this.filling = false;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.final = false;
    this.state = "connecting";
    window.addEventListener("online", () => {
      if (this.state !== "connected") this.reconnectNow();
    });
    window.addEventListener("offline", () => this.setState("offline", "Offline: no network. Reconnecting when it is back…"));
  }

  start() {
    this.connect();
    return this;
  }

  setState(state, message) {
    this.state = state;
    this.indicator?.set(state, message);
  }

  /** One event envelope from the server (live or replayed). */
  receive(env) {
    if (typeof env?.seq !== "number" || env.seq <= this.lastSeq) return; // seen already
    if (env.seq === this.lastSeq + 1 && !this.filling) {
      this.accept(env);
      return;
    }
    this.held.push(env);
    this.gapTo = Math.max(this.gapTo, env.seq - 1);
    this.backfill();
  }

  accept(env) {
    this.lastSeq = env.seq;
    try {
      this.deliver(env);
    } catch (err) {
      console.error("rendering event", env.seq, err); // one bad event must not stop the stream
    }
  }

  /** The server says its log reaches `seq`: fetch anything newer we have not seen. */
  announce(seq) {
    if (typeof seq === "number" && seq > this.lastSeq) {
      this.gapTo = Math.max(this.gapTo, seq);
      this.backfill();
    }
  }

  async backfill() {
    if (this.filling) return;
    this.filling = true;
    try {
      while (this.lastSeq < this.gapTo && !this.stopped) {
        const before = this.lastSeq;
        const page = await this.fetchPage(this.lastSeq, BACKFILL_LIMIT);
        for (const env of page.events) {
          if (env.seq === this.lastSeq + 1) this.accept(env);
        }
        // Nothing new yet (not committed when announced): look again in a second.
        if (this.lastSeq === before) await new Promise((r) => setTimeout(r, 1000));
      }
    } catch {
      // The API is unreachable too: try again shortly (a reconnect with after=lastSeq also
      // replays what is missing; repeats are dropped).
      this.filling = false;
      clearTimeout(this.fillTimer);
      this.fillTimer = setTimeout(() => this.backfill(), 2000);
      return;
    }
    this.filling = false;
    const held = this.held.sort((a, b) => a.seq - b.seq);
    this.held = [];
    held.forEach((env) => this.receive(env));
  }

  scheduleReconnect(reason) {
    if (this.stopped || this.final) return;
    clearTimeout(this.timer);
    const delay = BACKOFF_S[Math.min(this.attempt, BACKOFF_S.length - 1)];
    this.attempt += 1;
    if (!navigator.onLine) {
      this.setState("offline", "Offline: no network. Reconnecting when it is back…");
      return;
    }
    this.setState("reconnecting", `${reason ? `${reason} ` : ""}Reconnecting in ${delay} s…`);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  }

  reconnectNow() {
    if (this.stopped) return;
    this.final = false;
    clearTimeout(this.timer);
    this.close();
    this.connect();
  }

  giveUp(message) {
    this.final = true;
    clearTimeout(this.timer);
    this.setState("offline", message);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.close();
  }
}

/** The session stream over `/ws/sessions/{id}/?after=N` (JSON frames). */
export class WsStream extends BaseStream {
  constructor({ path, ...options }) {
    super(options);
    this.path = path;
    this.socket = null;
    this.watchdog = null;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}${this.path}?after=${this.lastSeq}`;
    if (this.state !== "reconnecting") this.setState("connecting", "Connecting…");
    let socket;
    try {
      socket = new WebSocket(url, ["agent-runtime.v1"]);
    } catch {
      this.scheduleReconnect("Could not open the stream.");
      return;
    }
    this.socket = socket;
    this.lastError = null;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.setState("connected", "Live");
      this.touch();
    });
    socket.addEventListener("message", (message) => {
      if (socket !== this.socket) return;
      this.touch();
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      this.frame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      clearTimeout(this.watchdog);
      this.closed(event);
    });
  }

  frame(frame) {
    if (typeof frame.seq === "number") {
      this.receive(frame);
    } else if (frame.type === "stream.heartbeat") {
      this.announce(frame.last_seq);
    } else if (frame.type === "stream.reconnect") {
      this.reconnectReason = frame.reason; // server shutdown: reconnect soon with after=
    } else if (frame.type === "error") {
      this.lastError = frame.error ?? null;
    }
  }

  closed(event) {
    if (this.stopped) return;
    if (FINAL_CLOSES[event.code]) {
      this.giveUp(`Offline: ${this.lastError?.message ?? FINAL_CLOSES[event.code]}`);
      return;
    }
    if (event.code === 4429) {
      // Too many connections for this credential: wait as long as the server asked.
      const wait = Number(this.lastError?.details?.retry_after_s) || 10;
      this.setState("reconnecting", `Too many connections. Reconnecting in ${wait} s…`);
      this.timer = setTimeout(() => this.connect(), wait * 1000);
      return;
    }
    if (event.code === 1012 || this.reconnectReason) {
      this.reconnectReason = null;
      this.attempt = 0; // a server restart: come back at once, to another process
    }
    this.scheduleReconnect("Connection lost.");
  }

  touch() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.socket?.close(4000, "silent"), SILENCE_MS);
  }

  close() {
    clearTimeout(this.watchdog);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "client closed");
  }
}

/** The share view's stream: SSE from `url?after=N` (`id:` = seq, `event:` = type). */
export class SseStream extends BaseStream {
  constructor({ url, probe, ...options }) {
    super(options);
    this.url = url;
    this.probe = probe; // () → Promise: rejects with the API's 404 once the link is gone
    this.source = null;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const source = new EventSource(`${this.url}?after=${this.lastSeq}`);
    this.source = source;
    if (this.state !== "reconnecting") this.setState("connecting", "Connecting…");
    const onEvent = (message) => {
      if (source !== this.source) return;
      try { this.receive(JSON.parse(message.data)); } catch { /* not an envelope */ }
    };
    source.addEventListener("message", onEvent);
    SSE_TYPES.forEach((type) => source.addEventListener(type, onEvent));
    source.addEventListener("open", () => {
      if (source !== this.source) return;
      this.attempt = 0;
      this.setState("connected", "Live");
    });
    source.addEventListener("end", (message) => {
      if (source !== this.source) return;
      let reason = "";
      try { reason = JSON.parse(message.data).reason ?? ""; } catch { /* no body */ }
      this.close();
      if (reason === "share_revoked") this.giveUp("Offline: this share link was revoked or has expired.");
      else this.scheduleReconnect("The stream ended.");
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      this.close();
      // EventSource does not tell why; ask the API whether the link still works.
      this.probe().then(
        () => this.scheduleReconnect("Connection lost."),
        (err) => (err?.status === 404
          ? this.giveUp("Offline: this share link was revoked or has expired.")
          : this.scheduleReconnect("Connection lost.")),
      );
    });
  }

  close() {
    const source = this.source;
    this.source = null;
    source?.close();
  }
}
