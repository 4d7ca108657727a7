// Renderers for what agents produce (docs/console.md), shared by the session page, the share
// view and the other panels: a JSON tree, sanitised markdown, ANSI-coloured terminal text and
// Jupyter MIME bundles. Every function returns a detached Element; nothing here touches the
// page or the network. The page's CSP forbids inline styles and scripts, so:
// - ANSI colours become classes (console.css) or CSSOM styles, never `style` attributes;
// - markdown goes through DOMPurify (no scripts, no event handlers, no `style`);
// - HTML outputs live in an `<iframe sandbox="" srcdoc>` (no script, an opaque origin);
// - SVG is shown through an <img> data: URI (an image cannot run script), never inline.

import { marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import { AnsiUp } from "../vendor/ansi_up/ansi_up.js";

const JSON_CHILDREN_SHOWN = 200;
const JSON_OPEN_DEPTH = 1;
const RASTER = ["image/png", "image/jpeg", "image/gif", "image/webp"];
// The MIME types a bundle is shown as, richest first.
export const MIME_ORDER = [
  ...RASTER, "image/svg+xml", "text/html", "text/markdown", "application/json", "text/plain",
];

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  // Links in agent output open elsewhere and tell the target nothing about this page.
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** A JSON value as a collapsible tree (nested <details>, the first level open). */
export function renderJson(value) {
  const root = el("div", "json-tree");
  root.append(jsonNode(value, 0));
  return root;
}

function jsonNode(value, depth, key = null) {
  const label = () => {
    const frag = document.createDocumentFragment();
    if (typeof key === "number") frag.append(el("span", "i", String(key)), ": ");
    else if (key !== null) frag.append(el("span", "k", JSON.stringify(key)), ": ");
    return frag;
  };
  if (value === null || typeof value !== "object") {
    const line = el("div", "json-leaf");
    line.append(label(), jsonScalar(value));
    return line;
  }
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (!entries.length) {
    const line = el("div", "json-leaf");
    line.append(label(), el("span", "p", isArray ? "[]" : "{}"));
    return line;
  }
  const details = el("details");
  details.open = depth < JSON_OPEN_DEPTH;
  const summary = el("summary");
  const size = isArray ? `[${entries.length}]` : `{${entries.length}}`;
  summary.append(label(), el("span", "p", size));
  details.append(summary);
  // Children are built when first opened: a large payload costs nothing until looked at.
  const fill = () => {
    if (details.dataset.filled) return;
    details.dataset.filled = "1";
    for (const [k, v] of entries.slice(0, JSON_CHILDREN_SHOWN)) {
      details.append(jsonNode(v, depth + 1, k));
    }
    if (entries.length > JSON_CHILDREN_SHOWN) {
      details.append(el("div", "muted", `… ${entries.length - JSON_CHILDREN_SHOWN} more`));
    }
  };
  if (details.open) fill();
  else details.addEventListener("toggle", fill, { once: true });
  return details;
}

function jsonScalar(value) {
  if (typeof value === "string") return el("span", "s", JSON.stringify(value));
  if (typeof value === "number") return el("span", "n", String(value));
  if (typeof value === "boolean") return el("span", "b", String(value));
  return el("span", "null", value === undefined ? "undefined" : "null");
}

/** Markdown (GitHub flavour) rendered by marked and sanitised by DOMPurify. */
export function renderMarkdown(text) {
  const box = el("div", "markdown");
  const html = marked.parse(String(text ?? ""), { async: false, gfm: true, breaks: false });
  const clean = DOMPurify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"],
    FORBID_ATTR: ["style"],
  });
  box.append(clean);
  return box;
}

/**
 * A stateful ANSI → DOM converter for one stream (colours carry over between chunks).
 * `render(text)` returns a DocumentFragment of text and coloured <span>s.
 */
export class AnsiStream {
  constructor() {
    this.ansi = new AnsiUp();
    this.ansi.use_classes = true; // the 16 colours as classes; 256/true colours via CSSOM
    this.ansi.escape_html = true;
  }

  render(text) {
    return ansiHtmlToFragment(this.ansi.ansi_to_html(String(text ?? "")));
  }
}

/** Text with ANSI escape codes as a <span> of coloured spans (ansi_up escapes the HTML). */
export function renderAnsi(text) {
  const span = el("span", "ansi");
  span.append(new AnsiStream().render(text));
  return span;
}

const PARSER = new DOMParser();

// ansi_up's output is escaped text, <span class style> and <a href> (OSC 8 links). It is parsed
// in an inert document and rebuilt here: the page's CSP would drop `style` attributes, while
// styles set through CSSOM are allowed.
function ansiHtmlToFragment(html) {
  const doc = PARSER.parseFromString(`<body>${html}</body>`, "text/html");
  const out = document.createDocumentFragment();
  const copy = (source, target) => {
    for (const node of source.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) {
        target.append(node.data);
      } else if (node.nodeName === "SPAN") {
        const span = document.createElement("span");
        if (node.className) span.className = node.className;
        const style = node.getAttribute("style");
        if (style) span.style.cssText = style;
        copy(node, span);
        target.append(span);
      } else if (node.nodeName === "A" && /^https?:/i.test(node.getAttribute("href") ?? "")) {
        const a = document.createElement("a");
        a.href = node.getAttribute("href");
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        copy(node, a);
        target.append(a);
      } else {
        target.append(node.textContent ?? "");
      }
    }
  };
  copy(doc.body, out);
  return out;
}

function joined(value) {
  // Jupyter may split multi-line strings into a list of lines.
  return Array.isArray(value) ? value.join("") : String(value ?? "");
}

/** A byte count for people: "512 B", "12.3 KiB", "4.0 MiB". */
export function formatBytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Milliseconds for people: "850 ms", "2.4 s", "3 min 5 s". */
export function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/**
 * A link to an artifact's content: `ref` is {id, name?, size?, content_type?}; `urlFor(id)`
 * gives the URL (the owner's or the share link's content endpoint).
 */
export function artifactLink(ref, urlFor, label = null) {
  const a = el("a", "artifact-link");
  a.href = urlFor(ref.id);
  a.target = "_blank";
  a.rel = "noopener";
  const bits = [ref.content_type, formatBytes(ref.size)].filter(Boolean).join(", ");
  a.textContent = label ?? `${ref.name || "artifact"}${bits ? ` (${bits})` : ""}`;
  return a;
}

/**
 * A Jupyter MIME bundle ({mime: value}) as its richest representation (MIME_ORDER). Values
 * moved to artifacts are in `options.artifacts` ({mime: {id, name, size, content_type}}) and
 * are shown from `options.artifactUrl(id)` (images) or linked. `options.alt` names images.
 */
export function renderMime(bundle, { artifacts = {}, artifactUrl = null, alt = null } = {}) {
  const box = el("div", "mime");
  const data = bundle && typeof bundle === "object" ? bundle : {};
  const stored = artifacts && typeof artifacts === "object" ? artifacts : {};
  const plain = data["text/plain"] != null ? joined(data["text/plain"]) : null;
  const has = (mime) => data[mime] != null || (stored[mime] && artifactUrl);
  const mime = MIME_ORDER.find(has)
    ?? Object.keys(data).find((m) => m.endsWith("+json"))
    ?? Object.keys(stored).find(() => artifactUrl);
  box.dataset.mime = mime ?? "";
  if (!mime) {
    box.append(el("p", "muted", "(empty output)"));
    return box;
  }
  const altText = alt ?? (plain && plain.length < 200 ? plain : "Image output");
  if (data[mime] == null) {
    // Stored as an artifact: images load from it (served inline); other types are linked.
    const ref = stored[mime];
    if (mime.startsWith("image/") && mime !== "image/svg+xml") {
      const img = el("img");
      img.src = artifactUrl(ref.id);
      img.alt = altText;
      box.append(img);
    } else {
      box.append(artifactLink({ content_type: mime, ...ref }, artifactUrl,
        `Open the ${mime} output (${formatBytes(ref.size)})`));
    }
    return box;
  }
  const value = data[mime];
  if (RASTER.includes(mime)) {
    const img = el("img");
    img.src = `data:${mime};base64,${joined(value).replace(/\s+/g, "")}`;
    img.alt = altText;
    box.append(img);
  } else if (mime === "image/svg+xml") {
    const img = el("img");
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(joined(value))}`;
    img.alt = altText;
    box.append(img);
  } else if (mime === "text/html") {
    const frame = el("iframe");
    frame.setAttribute("sandbox", ""); // no scripts, no forms, an opaque origin
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.title = "HTML output";
    frame.srcdoc = joined(value);
    box.append(frame);
  } else if (mime === "text/markdown") {
    box.append(renderMarkdown(joined(value)));
  } else if (mime === "application/json" || mime.endsWith("+json")) {
    box.append(renderJson(value));
  } else {
    box.append(el("pre", "plain", joined(value)));
  }
  return box;
}
