"""Claude Code (``@anthropic-ai/claude-code``, npm) as an architecture.

Measured in ``docs/dev/coding-agent-clis.md``: Claude Code speaks only the Anthropic Messages
API, so its model has ``provider: anthropic`` (Anthropic itself, or any Anthropic-compatible
gateway such as LiteLLM's); ``ANTHROPIC_BASE_URL`` (no ``/v1``) and ``ANTHROPIC_API_KEY``
point it there, ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` stops its other connections
(telemetry, update and feature checks). ``-p --output-format stream-json --verbose
--include-partial-messages`` prints JSON lines with text deltas. Our sandbox is the boundary:
``--dangerously-skip-permissions`` (``IS_SANDBOX=1`` lets it run as root in the unisolated
tier); ``plan`` runs ``--permission-mode plan`` (reads only, the answer is the plan). The npm
package's launcher is a stub until its install script runs; the platform package's native
binary is run directly.
"""

from __future__ import annotations

from sessions.runners.architectures.base import Architecture, Launch, Package, RunRequest


class ClaudeCode(Architecture):
    name = "claude-code"
    package = Package(
        "npm", "@anthropic-ai/claude-code", "2.1.332",
        executables=("node_modules/@anthropic-ai/claude-code-linux-x64/claude",),
    )  # fmt: skip
    providers = ("anthropic",)
    summary = "Claude Code: `claude -p --output-format stream-json` (JSON lines, text deltas)."
    key_env = "ANTHROPIC_API_KEY"

    def launch(self, run: RunRequest) -> Launch:
        argv = [
            run.executable, "-p", "--output-format", "stream-json", "--verbose",
            "--include-partial-messages", "--model", run.model.name,
        ]  # fmt: skip
        if run.task_type == "plan":
            argv += ["--permission-mode", "plan"]
        else:
            argv += ["--dangerously-skip-permissions"]
        argv += [*run.options.get("extra_args", []), run.prompt]
        env = {
            **self.common_env(run),
            "ANTHROPIC_BASE_URL": run.model.anthropic_base_url,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": str(int(run.options.get("max_retries", 2))),
            "IS_SANDBOX": "1",
        }
        return Launch(argv=argv, env=env)
