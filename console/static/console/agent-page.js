// The agent page (templates/console/agent_detail.html): delete the agent through the REST API
// after a confirmation, then back to the list. Errors (e.g. a viewer's 403) stay on the page.
import { api, clearError, pageConfig, showError } from "./api.js";

const config = pageConfig();
const button = document.getElementById("delete-agent");
const box = document.getElementById("agent-error");

button?.addEventListener("click", async () => {
  const question = `Delete the agent "${config.slug}"? It disappears from lists and cannot get new ` +
    "sessions; existing sessions and tasks stay readable.";
  if (!window.confirm(question)) return;
  clearError(box);
  button.disabled = true;
  try {
    await api("DELETE", config.api);
    window.location.assign(`${config.list_url}?deleted=${encodeURIComponent(config.slug)}`);
  } catch (err) {
    button.disabled = false;
    showError(box, err);
  }
});
