// The API keys page (templates/console/api_keys.html): create a key (shown once, with a copy
// button), revoke one after a confirmation. Both through the REST API; errors in place.
import { ApiError, api, clearError, flash, h, pageConfig, showError } from "./api.js";

const config = pageConfig();
const form = document.getElementById("create-key-form");
const formError = document.getElementById("create-key-error");
const listError = document.getElementById("keys-error");
const tbody = document.querySelector("#keys-table tbody");
const panel = document.getElementById("new-key");
const secret = document.getElementById("new-key-secret");

function stamp(iso, fallback = "never") {
  if (!iso) return h("span", { class: "muted" }, fallback);
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return h("time", { datetime: iso }, text);
}

function keyStatus(key) {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return "expired";
  return "active";
}

/** A table row for `key` (the API's ApiKey shape), like the server renders them. */
function keyRow(key) {
  const status = keyStatus(key);
  const scopes = key.scopes.flatMap((s, i) => (i ? [" ", h("code", {}, s)] : [h("code", {}, s)]));
  return h("tr", { dataset: { key: key.id } },
    h("td", {}, key.name,
      key.user !== config.username ? [" ", h("span", { class: "muted" }, `(${key.user})`)] : null),
    h("td", {}, h("code", {}, key.prefix)),
    h("td", {}, scopes),
    h("td", {}, key.team ? key.team.slug : "all teams"),
    h("td", {}, stamp(key.created_at)),
    h("td", {}, stamp(key.expires_at)),
    h("td", {}, stamp(key.last_used_at)),
    h("td", {}, h("span", { class: "badge", "data-status": status }, status)),
    h("td", {}, status === "revoked" ? null : h("button", {
      type: "button", class: "danger", "data-revoke": key.id, "data-name": key.name,
      "aria-label": `Revoke ${key.name} (${key.prefix})`,
    }, "Revoke")),
  );
}

function showList(hasRows) {
  document.getElementById("keys-wrap").hidden = !hasRows;
  document.getElementById("keys-empty").hidden = hasRows;
}

/** The form's body; the date input means the end of that day, local time. */
function body() {
  const data = new FormData(form);
  const payload = { name: data.get("name").trim(), scopes: data.getAll("scopes") };
  if (data.get("team")) payload.team = data.get("team");
  const day = data.get("expires_at");
  if (day) payload.expires_at = new Date(`${day}T23:59:59`).toISOString();
  return payload;
}

/** The API says "past" for an expiry in the past under details.expires_at, not details.fields. */
function withFieldErrors(err) {
  if (err.details?.fields || !err.details?.expires_at) return err;
  return new ApiError(err.status, err.code, err.message,
    { ...err.details, fields: { expires_at: [err.message] } });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(formError, form);
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  try {
    const created = await api("POST", config.api, body());
    tbody.prepend(keyRow(created));
    showList(true);
    form.reset();
    showSecret(created);
  } catch (err) {
    showError(formError, withFieldErrors(err), form);
  } finally {
    submit.disabled = false;
  }
});

function showSecret(created) {
  secret.value = created.key;
  document.getElementById("new-key-name").textContent = `(${created.name})`;
  document.getElementById("new-key-example").textContent =
    `curl -H "Authorization: Bearer ${created.key}" ${config.example_url}`;
  panel.hidden = false;
  // Focus on the key itself, selected (Ctrl+C copies it); the warning is its description.
  secret.focus();
  secret.select();
}

// Once dismissed, the key is gone from the page for good (the server has only its hash).
function hideSecret() {
  secret.value = "";
  document.getElementById("new-key-example").textContent = "";
  panel.hidden = true;
  form.elements.name.focus();
}

document.getElementById("copy-key").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(secret.value);
    flash("The key is on the clipboard.");
  } catch {
    // No clipboard permission (or an insecure origin): leave it selected for Ctrl+C.
    secret.focus();
    secret.select();
    flash("Copying was refused by the browser; the key is selected, press Ctrl+C.", "error");
  }
});
document.getElementById("dismiss-key").addEventListener("click", hideSecret);

tbody.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-revoke]");
  if (!button) return;
  const name = button.dataset.name;
  if (!window.confirm(`Revoke the key "${name}"? Programs using it stop working at once.`)) return;
  clearError(listError);
  button.disabled = true;
  try {
    const revoked = await api("DELETE", `${config.api}/${encodeURIComponent(button.dataset.revoke)}`);
    const row = button.closest("tr");
    const fresh = keyRow(revoked);
    row.replaceWith(fresh);
    fresh.querySelector("td").setAttribute("tabindex", "-1");
    fresh.querySelector("td").focus();
    flash(`Key "${name}" revoked.`);
  } catch (err) {
    button.disabled = false;
    showError(listError, err);
  }
});
