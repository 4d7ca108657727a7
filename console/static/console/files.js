// The workspace file browser of the session page and the share page (templates/console/_files.html).
// It lists one folder of the workspace at a time (GET files_api?path=), navigates by breadcrumb,
// uploads (PUT files_api/<path>, the raw body, with progress), downloads (the file URL answers
// with an attachment), previews the start of a file and deletes (not in read-only mode). It
// refreshes itself when a task changed the workspace (`file.changed`, or a task that ended).

import { api, ApiError, clearError, flash, h, pageConfig, showError, when } from "./api.js";
import { formatBytes as formatSize } from "./render.js";

const PREVIEW_BYTES = 64 * 1024; // text previews show the start of a file only
const IMAGE_PREVIEW_MAX = 10 * 1024 * 1024; // an image is shown whole, up to this size
const REFRESH_DELAY_MS = 400;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

const panel = document.getElementById("files-panel");
if (panel) init(panel);

function init(panel) {
  const config = pageConfig();
  const base = config.files_api;
  const readOnly = Boolean(config.read_only);
  const $ = (id) => document.getElementById(id);
  const els = {
    refresh: $("files-refresh"), crumbs: $("files-crumbs"), upload: $("files-upload"),
    input: $("files-input"), error: $("files-error"), progress: $("files-progress"),
    list: $("files-list"), preview: $("files-preview"), previewTitle: $("files-preview-title"),
    previewNote: $("files-preview-note"), previewBody: $("files-preview-body"),
    previewDownload: $("files-preview-download"), previewClose: $("files-preview-close"),
  };
  if (!base) {
    els.list.replaceChildren(h("p", { class: "muted" }, "This page has no workspace."));
    els.list.setAttribute("aria-busy", "false");
    return;
  }

  let dir = ""; // the folder shown, relative to the workspace root ("" is the root)
  let generation = 0; // answers to older listing requests are dropped
  let previewPath = null;
  let previewUrl = null; // a blob: URL to revoke
  let refreshTimer = null;

  const fileUrl = (path) => `${base}/${path.split("/").map(encodeURIComponent).join("/")}`;
  const join = (folder, name) => (folder ? `${folder}/${name}` : name);
  const basename = (path) => path.split("/").pop();

  /** List `folder`; `focus` is a path whose row should get focus, or "first"; a `background`
   * refresh shows its error without taking the focus. */
  async function load(folder, { focus = null, background = false } = {}) {
    const mine = ++generation;
    els.list.setAttribute("aria-busy", "true");
    let listing;
    try {
      listing = await api("GET", `${base}?${new URLSearchParams({ path: folder })}`);
    } catch (err) {
      if (mine !== generation) return;
      els.list.setAttribute("aria-busy", "false");
      if (folder && err.status === 404) { // the folder went away: show the root instead
        flash(`The folder ${folder} no longer exists.`, "error");
        return load("", { focus: background ? null : "first", background });
      }
      const active = document.activeElement;
      showError(els.error, err);
      if (background) active?.focus();
      return;
    }
    if (mine !== generation) return;
    dir = listing.path ?? folder;
    renderCrumbs();
    renderList(listing);
    els.list.setAttribute("aria-busy", "false");
    if (focus) focusRow(focus);
  }

  function renderCrumbs() {
    const parts = dir ? dir.split("/") : [];
    const items = [crumb("Workspace", "", parts.length === 0)];
    parts.forEach((part, i) => {
      items.push(h("span", { class: "sep", "aria-hidden": "true" }, "/"));
      items.push(crumb(part, parts.slice(0, i + 1).join("/"), i === parts.length - 1));
    });
    els.crumbs.replaceChildren(...items);
  }

  function crumb(label, path, current) {
    if (current) return h("span", { "aria-current": "location" }, label);
    return h("button", {
      type: "button", class: "link", "data-dir": path,
      onclick: () => { clearError(els.error); load(path, { focus: "first" }); },
    }, label);
  }

  function renderList(listing) {
    const entries = listing.entries ?? [];
    if (!entries.length) {
      const text = dir ? "This folder is empty." : "No files yet — upload one or let a task write some.";
      els.list.replaceChildren(h("div", { class: "empty files-empty" }, h("p", {}, text)));
      return;
    }
    const parts = [h("ul", { class: "files-list", "aria-label": `Files in ${dir || "the workspace root"}` }, entries.map(row))];
    if (listing.truncated) parts.push(h("p", { class: "note" }, `Only the first ${entries.length} entries are listed.`));
    els.list.replaceChildren(...parts);
  }

  function row(entry) {
    const name = basename(entry.path);
    let nameControl;
    if (entry.type === "directory") {
      nameControl = h("button", {
        type: "button", class: "link file-name", "data-path": entry.path, "data-type": "directory",
        "aria-label": `Open folder ${name}`,
        onclick: () => { clearError(els.error); load(entry.path, { focus: "first" }); },
      }, `${name}/`);
    } else if (entry.type === "file") {
      nameControl = h("button", {
        type: "button", class: "link file-name", "data-path": entry.path, "data-type": "file",
        "aria-label": `Preview ${name}`, onclick: () => preview(entry),
      }, name);
    } else {
      nameControl = h("span", { class: "file-name muted" }, `${name} (${entry.type}, not followed)`);
    }
    const meta = [entry.type === "directory" ? "folder" : formatSize(entry.size)];
    const actions = h("span", { class: "file-actions" });
    if (entry.type === "file") {
      actions.append(h("a", { href: fileUrl(entry.path), download: name, "aria-label": `Download ${name}` }, "Download"));
    }
    if (!readOnly) {
      actions.append(h("button", {
        type: "button", class: "link danger", "aria-label": `Delete ${name}`, onclick: () => remove(entry),
      }, "Delete"));
    }
    return h("li", { class: "file-row", "data-path": entry.path, "data-type": entry.type },
      h("span", { class: "file-main" }, nameControl,
        h("span", { class: "file-meta muted" }, meta, " · ", h("time", { datetime: entry.modified }, when(entry.modified)))),
      actions);
  }

  /** Focus the row of `path` (its first control), the first row, or the panel's heading. */
  function focusRow(path) {
    const rows = [...els.list.querySelectorAll("li.file-row")];
    const target = (path !== "first" && rows.find((tr) => tr.dataset.path === path)) || rows[0];
    const control = target?.querySelector("button, a");
    if (control) control.focus();
    else (readOnly ? els.refresh : els.input).focus();
  }

  async function remove(entry) {
    const name = basename(entry.path);
    const what = entry.type === "directory" ? `the folder ${entry.path} and everything in it` : entry.path;
    if (!window.confirm(`Delete ${what}?`)) return;
    clearError(els.error);
    const rows = [...els.list.querySelectorAll("li.file-row")];
    const index = rows.findIndex((tr) => tr.dataset.path === entry.path);
    const neighbour = rows[index + 1]?.dataset.path ?? rows[index - 1]?.dataset.path ?? "first";
    const query = entry.type === "directory" ? "?recursive=true" : "";
    try {
      await api("DELETE", fileUrl(entry.path) + query);
    } catch (err) {
      showError(els.error, err);
      return;
    }
    if (previewPath === entry.path) closePreview({ restoreFocus: false });
    flash(`Deleted ${name}.`);
    await load(dir, { focus: neighbour });
  }

  // Uploads ----------------------------------------------------------------------------------

  /** PUT each of `files` into the folder shown, one after the other, with progress. */
  async function upload(files) {
    if (!files.length) return;
    clearError(els.error);
    const folder = dir;
    let done = 0;
    let lastError = null;
    const finished = []; // progress rows of the files stored: gone once the list shows them
    for (const file of files) {
      const path = join(folder, file.name);
      const bar = h("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
      const status = h("span", { class: "muted" }, "uploading…");
      const item = h("li", { "data-path": path }, h("span", { class: "file-name" }, file.name), " ", bar, " ", status);
      els.progress.append(item);
      try {
        await put(path, file, (fraction) => { bar.value = Math.round(fraction * 100); });
        done += 1;
        bar.value = 100;
        status.textContent = "uploaded";
        finished.push(item);
      } catch (err) {
        lastError = err;
        bar.remove();
        item.classList.add("failed");
        status.className = "field-error";
        status.textContent = `${err.message}${err.code ? ` (${err.code})` : ""}`;
        const dismiss = h("button", {
          type: "button", class: "link", "aria-label": `Dismiss the error about ${file.name}`,
          onclick: () => { item.remove(); els.input.focus(); },
        }, "Dismiss");
        item.append(" ", dismiss);
      }
    }
    if (done) flash(`Uploaded ${done} file${done === 1 ? "" : "s"}.`);
    if (lastError) showError(els.error, lastError);
    if (folder === dir) await load(dir);
    finished.forEach((item) => item.remove());
  }

  /** PUT `file` to `path` with XMLHttpRequest (fetch cannot report upload progress). */
  function put(path, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", fileUrl(path));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", CSRF);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && e.total) onProgress(e.loaded / e.total); };
      xhr.onerror = () => reject(new ApiError(0, "network_error", "The server could not be reached.", {}));
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
        const e = body?.error ?? {};
        reject(new ApiError(xhr.status, e.code ?? `http_${xhr.status}`,
          e.message ?? `${xhr.status} ${xhr.statusText}`, e.details ?? {}));
      };
      xhr.send(file);
    });
  }

  // Preview ----------------------------------------------------------------------------------

  async function preview(entry) {
    const path = entry.path;
    previewPath = path;
    revokePreview();
    els.preview.hidden = false;
    els.previewTitle.textContent = path;
    els.previewDownload.href = fileUrl(path);
    els.previewDownload.setAttribute("download", basename(path));
    els.previewDownload.setAttribute("aria-label", `Download ${basename(path)}`);
    els.previewNote.textContent = "";
    els.previewBody.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    els.previewTitle.focus();
    let response;
    try {
      response = await api("GET", fileUrl(path), undefined, { raw: true });
    } catch (err) {
      if (previewPath !== path) return;
      const box = h("div", { class: "error-box", role: "alert", tabindex: "-1" });
      els.previewBody.replaceChildren(box);
      showError(box, err);
      return;
    }
    if (previewPath !== path) return response.body?.cancel();
    const type = (response.headers.get("Content-Type") ?? "").split(";")[0].trim();
    const size = Number(response.headers.get("Content-Length") ?? entry.size ?? 0);
    if (type.startsWith("image/")) {
      if (size > IMAGE_PREVIEW_MAX) {
        response.body?.cancel();
        return showPreview(h("p", { class: "muted" }, `An image of ${formatSize(size)}: too large to preview; download it instead.`));
      }
      const blob = await response.blob();
      if (previewPath !== path) return;
      previewUrl = URL.createObjectURL(blob);
      return showPreview(h("img", { src: previewUrl, alt: `Preview of ${basename(path)}`, class: "files-image" }));
    }
    const bytes = await readStart(response, PREVIEW_BYTES);
    if (previewPath !== path) return;
    const text = asText(bytes);
    if (text === null) {
      return showPreview(h("p", { class: "muted files-binary" }, `Binary file (${type || "unknown type"}, ${formatSize(size)}): download it to open it.`));
    }
    if (!text.length) return showPreview(h("p", { class: "muted" }, "This file is empty."));
    if (size > bytes.length) els.previewNote.textContent = `The first ${formatSize(bytes.length)} of ${formatSize(size)}.`;
    showPreview(h("pre", { class: "files-text", tabindex: "0", "aria-label": `Contents of ${basename(path)}` }, text));
  }

  function showPreview(node) {
    els.previewBody.replaceChildren(node);
  }

  function revokePreview() {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
  }

  function closePreview({ restoreFocus = true } = {}) {
    const path = previewPath;
    previewPath = null;
    revokePreview();
    els.preview.hidden = true;
    els.previewBody.replaceChildren();
    if (restoreFocus) {
      const control = path && [...els.list.querySelectorAll("button.file-name")].find((b) => b.dataset.path === path);
      (control ?? els.refresh).focus();
    }
  }

  // Events -----------------------------------------------------------------------------------

  /** List the folder again soon; events coming in the meantime join this one (and a stream
   * of them cannot keep postponing it). */
  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      const active = document.activeElement;
      const focused = els.list.contains(active) ? active.closest("li.file-row")?.dataset.path : null;
      load(dir, { focus: focused, background: true });
    }, REFRESH_DELAY_MS);
  }

  document.addEventListener("console:event", (e) => {
    const event = e.detail ?? {};
    // Command runs write files without announcing each one: a task that ended may have too.
    if (event.type === "file.changed" || (event.type === "task.status" && TERMINAL.has(event.data?.status))) {
      scheduleRefresh();
    }
  });

  els.refresh.addEventListener("click", () => { clearError(els.error); load(dir); });
  els.previewClose.addEventListener("click", () => closePreview());
  els.preview.addEventListener("keydown", (e) => { if (e.key === "Escape") closePreview(); });

  if (!readOnly) {
    els.upload.hidden = false;
    els.input.addEventListener("change", async () => {
      const files = [...els.input.files];
      els.input.value = "";
      await upload(files);
    });
    const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
    panel.addEventListener("dragenter", (e) => { if (hasFiles(e)) { e.preventDefault(); panel.classList.add("dropping"); } });
    panel.addEventListener("dragover", (e) => { if (hasFiles(e)) { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; } });
    panel.addEventListener("dragleave", (e) => { if (!panel.contains(e.relatedTarget)) panel.classList.remove("dropping"); });
    panel.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      panel.classList.remove("dropping");
      upload([...e.dataTransfer.files]);
    });
  }

  load("");
}

/** The first `limit` bytes of `response`'s body (the rest is not downloaded). */
async function readStart(response, limit) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer()).slice(0, limit);
  const reader = response.body.getReader();
  const chunks = [];
  let total = 0;
  while (total < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  if (total >= limit) reader.cancel().catch(() => {});
  const bytes = new Uint8Array(Math.min(total, limit));
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, bytes.length - offset);
    bytes.set(part, offset);
    offset += part.length;
    if (offset >= bytes.length) break;
  }
  return bytes;
}

/** `bytes` as UTF-8 text, or null when they look binary (a NUL, or many undecodable bytes). */
function asText(bytes) {
  if (bytes.includes(0)) return null;
  const text = new TextDecoder("utf-8").decode(bytes);
  const bad = (text.match(/\uFFFD/g) ?? []).length;
  // A cut at the 64 KiB boundary may split one character: allow a few replacement characters.
  return bad > 4 && bad > text.length / 100 ? null : text;
}
