"""Aider (``aider-chat``, PyPI) as an architecture.

Measured in ``docs/dev/coding-agent-clis.md``: the endpoint and key come from
``OPENAI_API_BASE`` / ``OPENAI_API_KEY`` with ``--model openai/<name>``; a model metadata file
and ``LITELLM_LOCAL_MODEL_COST_MAP`` stop litellm's price-map downloads; ``--no-check-update
--analytics-disable`` the rest. Aider edits through SEARCH/REPLACE blocks in its replies (no
tool calls) and runs tests only through ``--test-cmd`` + ``--auto-test``; files to edit are
positional, files to read ``--read``. ``plan`` runs ``--chat-mode ask`` (no edits).
"""

from __future__ import annotations

import json
from typing import ClassVar

from sessions.runners.architectures.base import Architecture, Launch, Package, RunRequest


class Aider(Architecture):
    name = "aider"
    package = Package("pypi", "aider-chat", "0.86.2", executables=("bin/aider",))
    summary = "Aider: plain text output (SEARCH/REPLACE edits, `--test-cmd` runs)."
    key_env: ClassVar[str] = "OPENAI_API_KEY"

    def launch(self, run: RunRequest) -> Launch:
        model = run.model
        home = run.home
        metadata = {
            f"openai/{model.name}": {
                "max_input_tokens": int(run.options.get("context_tokens", 128000)),
                "max_output_tokens": int(run.options.get("output_tokens", 8192)),
                "max_tokens": int(run.options.get("output_tokens", 8192)),
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
        argv = [
            run.executable, "--model", f"openai/{model.name}",
            "--model-metadata-file", f"{home}/aider-model-metadata.json",
            "--edit-format", str(run.options.get("edit_format", "diff")),
            # No files named: let Aider's repository map show the model where to look.
            "--map-tokens", str(int(run.options.get("map_tokens", 0 if run.edit_files else 1024))),
            "--yes-always", "--no-git", "--no-check-update", "--analytics-disable",
            "--no-show-model-warnings", "--no-pretty", "--no-fancy-input", "--no-detect-urls",
            "--no-notifications", "--no-show-release-notes",
            "--chat-history-file", f"{home}/aider.chat.history.md",
            "--input-history-file", f"{home}/aider.input.history",
            "--llm-history-file", f"{home}/aider.llm.history",
        ]  # fmt: skip
        if run.task_type == "plan":
            argv += ["--chat-mode", "ask"]
        elif run.test_command:
            argv += ["--test-cmd", run.test_command, "--auto-test"]
        for path in run.read_files:
            argv += ["--read", path]
        argv += list(run.options.get("extra_args", []))
        argv += ["--message", run.prompt, *run.edit_files]
        env = {
            **self.common_env(run),
            "OPENAI_API_BASE": model.openai_base_url,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "AIDER_CHECK_UPDATE": "false",
            "AIDER_ANALYTICS": "false",
        }
        return Launch(
            argv=argv,
            env=env,
            files={"aider-model-metadata.json": json.dumps(metadata)},
            converter_options={"test_cmd": run.test_command or None},
        )
