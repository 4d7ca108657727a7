"""OpenCode (``opencode-ai``, npm) as an architecture.

Measured in ``docs/dev/coding-agent-clis.md``: the model is a custom provider on OpenCode's
built-in ``@ai-sdk/openai-compatible`` given inline in ``OPENCODE_CONFIG_CONTENT``, its key
read from the environment (``{env:…}``, so it is in no file); ``--pure`` and the
``OPENCODE_DISABLE_*`` switches stop its model-list fetch, LSP downloads and update checks,
a stub package lock its background plugin install (:func:`_plugin_stub`); ``--auto``
approves what the configuration does not deny (our sandbox is the boundary;
``external_directory`` and ``webfetch`` are denied). The prompt goes on stdin (a
positional message is quoted literally). ``plan`` runs OpenCode's read-only ``plan`` agent.
"""

from __future__ import annotations

import json

from sessions.runners.architectures.base import Architecture, Launch, Package, RunRequest

PROVIDER_ID = "agent"


class OpenCode(Architecture):
    name = "opencode"
    package = Package(
        "npm", "opencode-ai", "1.18.33",
        executables=(
            "node_modules/opencode-linux-x64/bin/opencode",
            "node_modules/opencode-linux-x64-baseline/bin/opencode",
            "node_modules/opencode-ai/bin/opencode.exe",
        ),
    )  # fmt: skip
    summary = "OpenCode: `opencode run --format json` (JSON lines of finished parts)."

    def launch(self, run: RunRequest) -> Launch:
        model = run.model
        config = {
            "$schema": "https://opencode.ai/config.json",
            "provider": {
                PROVIDER_ID: {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Agent model",
                    "options": {
                        "baseURL": model.openai_base_url,
                        "apiKey": "{env:" + model.api_key_env + "}",
                    },
                    "models": {
                        model.name: {
                            "name": model.name,
                            "tool_call": True,
                            "limit": {
                                "context": int(run.options.get("context_tokens", 128000)),
                                "output": int(run.options.get("output_tokens", 8192)),
                            },
                        }
                    },
                }
            },
            "model": f"{PROVIDER_ID}/{model.name}",
            "small_model": f"{PROVIDER_ID}/{model.name}",
            "autoupdate": False,
            "share": "disabled",
            "permission": {"external_directory": "deny", "webfetch": "deny"},
        }
        argv = [
            run.executable, "run", "--format", "json", "--pure", "--auto",
            "--model", f"{PROVIDER_ID}/{model.name}", "--dir", run.workspace,
            "--title", run.title or "task",
        ]  # fmt: skip
        if run.task_type == "plan":
            argv += ["--agent", "plan"]
        for path in run.read_files:
            argv += ["--file", path]
        argv += list(run.options.get("extra_args", []))
        env = {
            **self.common_env(run),
            "OPENCODE_CONFIG_CONTENT": json.dumps(config),
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_CLAUDE_CODE": "1",
            "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
            "OPENCODE_DISABLE_EMBEDDED_WEB_UI": "1",
            "OPENCODE_DISABLE_FFF": "1",
        }
        return Launch(argv=argv, env=env, stdin=run.prompt, files=_plugin_stub())


def _plugin_stub() -> dict[str, str]:
    """OpenCode installs ``@opencode-ai/plugin`` into its config directory in the background
    (an npm fetch, even with ``--pure``) unless ``node_modules`` exists and
    ``package-lock.json`` lists it: a stub that satisfies that check keeps it offline."""
    deps = {"@opencode-ai/plugin": OpenCode.package.version}
    return {
        ".config/opencode/package.json": json.dumps({"dependencies": deps}),
        ".config/opencode/package-lock.json": json.dumps(
            {"packages": {"": {"dependencies": deps}}}
        ),
        ".config/opencode/node_modules/.keep": "",
    }
