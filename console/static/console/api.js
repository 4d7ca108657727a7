// The console's one door to the server: REST calls with the session cookie and CSRF token,
// errors in the API's shape ({"error": {"code", "message", "details"}}) shown where they happen.

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

/** An error answered by the API: `status` (HTTP), `code`, `message`, `details` (object). */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? {};
  }
}

/**
 * Call the REST API. `body` is sent as JSON unless it is a Blob/File/FormData (sent as is).
 * Resolves to the decoded JSON (or null for 204, the Response for `raw: true`); rejects with
 * an ApiError (network failures become code "network_error", status 0).
 */
export async function api(method, path, body = undefined, { raw = false, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRFToken"] = CSRF;
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof FormData) init.body = body;
    else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network_error", `The server could not be reached (${err.message}).`, {});
  }
  if (!response.ok) {
    let payload = null;
    try { payload = await response.json(); } catch { /* not JSON */ }
    const e = payload?.error ?? {};
    throw new ApiError(response.status, e.code ?? `http_${response.status}`,
      e.message ?? `${response.status} ${response.statusText}`, e.details ?? {});
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

/** The page's configuration (the `page-config` JSON script). */
export function pageConfig() {
  const el = document.getElementById("page-config");
  return el ? JSON.parse(el.textContent) : {};
}

/**
 * Show an error in `box` (an element with role="alert"), field errors next to their inputs
 * (`[data-field="name"]` containers inside `form`), and return focus to the box.
 */
export function showError(box, err, form = null) {
  clearError(box, form);
  box.hidden = false;
  const title = document.createElement("strong");
  title.textContent = err.message || "Something went wrong.";
  box.append(title);
  if (err.code) {
    const code = document.createElement("code");
    code.className = "error-code";
    code.textContent = err.code;
    box.append(" ", code);
  }
  const fields = err.details?.fields ?? {};
  const list = document.createElement("ul");
  for (const [name, problems] of Object.entries(fields)) {
    const text = Array.isArray(problems) ? problems.map(describe).join(" ") : describe(problems);
    const slot = form?.querySelector(`[data-field="${CSS.escape(name)}"] .field-error`);
    if (slot) {
      slot.textContent = text;
      slot.closest("[data-field]")?.querySelector("input,textarea,select")
        ?.setAttribute("aria-invalid", "true");
    }
    const li = document.createElement("li");
    li.textContent = `${name}: ${text}`;
    list.append(li);
  }
  if (list.children.length) box.append(list);
  box.focus();
}

/** Hide `box` and clear field errors in `form`. */
export function clearError(box, form = null) {
  box.replaceChildren();
  box.hidden = true;
  form?.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
  form?.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
}

function describe(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(describe).join(" ");
  if (typeof value === "object") return value.message ?? JSON.stringify(value);
  return String(value);
}

/** A short message in the page's live region (role="status"). */
export function flash(text, kind = "info") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.dataset.kind = kind;
  box.textContent = text;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { box.textContent = ""; }, 6000);
}

/** `document.createElement` with attributes, properties (`on*` handlers) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A relative "time ago" / local time for an ISO timestamp. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString();
}
