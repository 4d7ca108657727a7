// The agent form (templates/console/agent_form.html): JSON fields are parsed here (a typo is
// reported next to its field before anything is sent); everything else is checked by the API,
// whose errors land under their fields and in the form's error box. On success: the agent page.
import { ApiError, api, clearError, pageConfig, showError } from "./api.js";

const config = pageConfig();
const form = document.getElementById("agent-form");
const box = document.getElementById("form-error");
const submit = form.querySelector('button[type="submit"]');

/** The textarea's JSON as an object, or a message saying what is wrong with it. */
function readJson(textarea) {
  const text = textarea.value.trim();
  if (text === "") return { value: {} };
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { problem: `Not valid JSON: ${err.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { problem: "Must be a JSON object ({ … })." };
  }
  return { value };
}

/** The API's field errors as text: schema violations carry the path inside the document. */
function fieldText(problem) {
  if (problem && typeof problem === "object" && "message" in problem) {
    return problem.path ? `at ${problem.path}: ${problem.message}` : problem.message;
  }
  return problem;
}

/** Errors that name no field but belong to one (a taken slug, a model the team may not use). */
const FIELD_OF_CODE = { slug_taken: "slug", model_not_allowed: "spec" };

function placeFieldErrors(err) {
  const fields = {};
  for (const [name, problems] of Object.entries(err.details?.fields ?? {})) {
    fields[name] = (Array.isArray(problems) ? problems : [problems]).map(fieldText);
  }
  const owner = FIELD_OF_CODE[err.code];
  if (owner && !fields[owner]) fields[owner] = [err.message];
  return new ApiError(err.status, err.code, err.message, { ...err.details, fields });
}

function body() {
  const data = new FormData(form);
  const problems = {};
  const payload = {
    name: data.get("name").trim(),
    kind: data.get("kind"),
    description: data.get("description"),
    is_public: form.elements.is_public.checked,
  };
  for (const textarea of form.querySelectorAll("textarea[data-json]")) {
    const { value, problem } = readJson(textarea);
    if (problem) problems[textarea.name] = [problem];
    else payload[textarea.name] = value;
  }
  if (config.mode === "create") {
    payload.slug = data.get("slug").trim();
    if (data.get("team")) payload.team = data.get("team");
  }
  return { payload, problems };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(box, form);
  const { payload, problems } = body();
  if (Object.keys(problems).length) {
    const names = Object.keys(problems).join(" and ");
    showError(box, new ApiError(0, "invalid_json", `Fix the JSON of the ${names} field.`,
      { fields: problems }), form);
    return;
  }
  submit.disabled = true;
  try {
    const agent = await api(config.mode === "create" ? "POST" : "PATCH", config.api, payload);
    window.location.assign(config.agent_url.replace("{id}", agent.id));
  } catch (err) {
    submit.disabled = false;
    showError(box, placeFieldErrors(err), form);
  }
});

// A field that was wrong loses its error as soon as it is edited.
form.addEventListener("input", (event) => {
  const slot = event.target.closest("[data-field]");
  if (!slot) return;
  slot.querySelector(".field-error").textContent = "";
  event.target.removeAttribute("aria-invalid");
});
