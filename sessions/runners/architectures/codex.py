"""Codex CLI (``@openai/codex``, npm) as an architecture.

Measured in ``docs/dev/coding-agent-clis.md``: Codex speaks only the OpenAI Responses API
(``wire_api = "responses"``), reads the endpoint from a ``model_providers`` entry of
``$CODEX_HOME/config.toml`` and the key from the variable that entry names (``env_key``);
every feature that fetches (update check, plugins, analytics, web search…) is switched off.
It offers its ``apply_patch`` tool only for a model its catalog knows, so the run's catalog
(``model_catalog_json``) holds the requested model: its own entry when Codex ships one, else a
copy of :data:`TEMPLATE_SLUG`'s under the model's name (the catalog is saved at install time
by ``codex debug models``, ``install.py``). Our sandbox is the sandbox: Codex runs with
``--dangerously-bypass-approvals-and-sandbox``. ``plan`` has no read-only mode that works
inside our sandbox (Codex's own is a nested bubblewrap), so it relies on the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sessions.runners.architectures.base import Architecture, Launch, Package, RunRequest

CATALOG_FILE = "agent-runtime-models.json"  # in the install directory, written by install.py
TEMPLATE_SLUG = "gpt-5.5"  # classic tools, freeform apply_patch, unified exec shell
PROVIDER_ID = "agent"

_CONFIG = """\
model = {model}
model_provider = "{provider}"
check_for_update_on_startup = false
allow_login_shell = false
web_search = "disabled"
model_catalog_json = {catalog}

[model_providers.{provider}]
name = "Agent model"
base_url = {base_url}
env_key = "{key_env}"
wire_api = "responses"
request_max_retries = {retries}
stream_max_retries = {retries}

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
log_user_prompt = false

[history]
persistence = "none"

[features]
plugins = false
remote_plugin = false
apps = false
tool_suggest = false
skill_mcp_dependency_install = false
image_generation = false
browser_use = false
computer_use = false
goals = false
daemon_auto_start = false
api_key_model_discovery = false

[agents]
enabled = false
"""


def catalog_entry(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    """The catalog entry for model ``name``: Codex's own, else the template's renamed.
    Raises KeyError when the catalog has neither (a broken install)."""
    models = {m.get("slug"): m for m in catalog.get("models", [])}
    if name in models:
        return dict(models[name])
    template = models[TEMPLATE_SLUG]
    return {**template, "slug": name, "display_name": name, "upgrade": None,
            "availability_nux": None}  # fmt: skip


class Codex(Architecture):
    name = "codex"
    package = Package(
        "npm", "@openai/codex", "0.171.0",
        executables=(
            "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
            "node_modules/@openai/codex/bin/codex.js",
        ),
    )  # fmt: skip
    summary = "Codex CLI: `codex exec --json` (JSON lines of thread/turn/item events)."

    def launch(self, run: RunRequest) -> Launch:
        model = run.model
        codex_home = f"{run.home}/.codex"
        catalog = json.loads((Path(run.install_dir) / CATALOG_FILE).read_text())
        config = _CONFIG.format(
            model=json.dumps(model.name), provider=PROVIDER_ID,
            catalog=json.dumps(f"{codex_home}/models.json"),
            base_url=json.dumps(model.openai_base_url), key_env=model.api_key_env,
            retries=int(run.options.get("max_retries", 2)),
        )  # fmt: skip
        argv = [
            run.executable, "exec", "--json", "--skip-git-repo-check", "--ephemeral",
            "--dangerously-bypass-approvals-and-sandbox", "-C", run.workspace,
            *run.options.get("extra_args", []), run.prompt,
        ]  # fmt: skip
        return Launch(
            argv=argv,
            env={**self.common_env(run), "CODEX_HOME": codex_home},
            files={
                ".codex/config.toml": config,
                ".codex/models.json": json.dumps({"models": [catalog_entry(catalog, model.name)]}),
            },
        )
