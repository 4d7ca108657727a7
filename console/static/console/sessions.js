// The sessions list's "New session" form (templates/console/sessions.html): POST
// /api/v1/sessions with the chosen agent, then the new session's page. API errors in place.
import { api, clearError, pageConfig, showError } from "./api.js";

const config = pageConfig();
const form = document.getElementById("new-session-form");

if (form) {
  const box = document.getElementById("new-session-error");
  const submit = form.querySelector('button[type="submit"]');

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(box, form);
    const data = new FormData(form);
    const body = { agent: data.get("agent"), name: (data.get("name") ?? "").trim() };
    if (data.get("team")) body.team = data.get("team");
    submit.disabled = true;
    try {
      const session = await api("POST", config.api, body);
      window.location.assign(config.session_url.replace("{id}", session.id));
    } catch (err) {
      submit.disabled = false;
      showError(box, err, form);
    }
  });
}
