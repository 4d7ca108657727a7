"""Preparing and finishing one architecture run of the ``command`` kind (issue 12).

:func:`prepare` turns a task into an :class:`ArchitectureRun`: the model endpoint (agent spec,
then the session's ``metadata.model_config`` and the task's ``config.model`` for the name, as
for ``llm`` agents), its key (a stored provider credential or a server environment variable;
given to the CLI in one environment variable and masked in every event), the CLI installed,
the task's ``configuration`` turned into a prompt (``prompts.py``), the private HOME files
written under ``/workspace/.agent/home``, the workspace folders ``specs/``, ``tests/`` and
``artifacts/`` created, the model's ``host:port`` added to the sandbox's egress allow-list, and
the transcript converter that reads the CLI's stdout. The command runner starts the process;
:func:`finish_result` adds what the transcript told to the task's result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from runtime_project.exceptions import InvalidInput
from sandboxes import paths
from sandboxes.paths import WorkspacePathError
from sessions.runners.architectures import ARCHITECTURES
from sessions.runners.architectures.base import Architecture, Launch, ModelEndpoint, RunRequest
from sessions.runners.architectures.install import ensure_installed, install_dir
from sessions.runners.architectures.prompts import (
    PLAN_FILE,
    WORKSPACE_DIRS,
    Configuration,
    build_prompt,
)
from sessions.runners.base import TaskContext
from sessions.runners.llm.runner import api_key_for, check_endpoint, model_overrides
from sessions.runners.transcripts import TranscriptConverter, converter_for

HOME = ".agent/home"  # workspace-relative; /workspace/.agent/home in the sandbox
RUNS = ".agent/runs"  # raw transcripts, one folder per task
SANDBOX_WORKSPACE = "/workspace"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass
class ArchitectureRun:
    """Everything the command runner needs for one CLI run.

    Attributes:
        architecture: the architecture.
        launch: argv, environment (the key included, under ``key_env``), stdin.
        converter: reads the CLI's stdout line by line.
        spec: the agent spec with the model endpoint added to ``allow_hosts``.
        task_type: the task's type (``plan`` saves the answer as ``artifacts/plan.md``).
    """

    architecture: Architecture
    launch: Launch
    converter: TranscriptConverter
    spec: dict[str, Any]
    task_type: str
    last_message: str = ""
    stdout_lines: list[str] = field(default_factory=list)


def configuration_of(data: dict[str, Any], spec: dict[str, Any]) -> Configuration:
    """The task's :class:`Configuration`: ``input.configuration``, with ``input.instructions``
    and ``spec.test_command`` as defaults. Paths are normalised (InvalidInput if one would
    leave the workspace)."""
    raw = dict(data.get("configuration") or {})

    def norm(items: list[str], name: str) -> tuple[str, ...]:
        try:
            return tuple(paths.normalize(p) for p in items)
        except WorkspacePathError as exc:
            raise InvalidInput(
                f"configuration.{name}: {exc.message}",
                details={"field": f"configuration.{name}"},
            ) from exc

    return Configuration(
        instructions=str(raw.get("instructions", data.get("instructions", ""))),
        app_url=str(raw.get("app_url", "")),
        specs=norm(raw.get("specs", []), "specs"),
        files=norm(raw.get("files", []), "files"),
        test_command=str(raw.get("test_command", spec.get("test_command", ""))),
    )


async def prepare(ctx: TaskContext, spec: dict[str, Any], cwd: str) -> ArchitectureRun | None:
    """The run of ``spec.architecture`` for this task, or None for ``generic`` (a plain
    command).

    Raises:
        InvalidInput: a loopback model endpoint with a sandbox without network.
        OutboundRefused: the endpoint is a private address not in ``LLM_ENDPOINT_ALLOWED_HOSTS``.
        CredentialNotFound: the spec names a stored credential the team does not have.
        ArchitectureNotInstalled / ArchitectureInstallFailed: see ``install.ensure_installed``.
    """
    name = spec.get("architecture", "generic")
    if name == "generic":
        return None
    architecture = ARCHITECTURES[name]()
    model = {**spec["model"], **model_overrides(ctx).get("model", {})}
    network = spec.get("network", settings.SANDBOX_NETWORK)
    host = urlsplit(model["base_url"]).hostname or ""
    if network == "none" and host.lower() in _LOOPBACK_HOSTS:
        raise InvalidInput(
            "The model endpoint is on the server's loopback, which a sandbox without network "
            "cannot reach; give an address the server can proxy to, or network 'host'.",
            code="model_unreachable",
            details={"base_url_host": host},
        )
    await check_endpoint(model)
    api_key = await api_key_for(ctx, model)
    if api_key:
        ctx.events.masker.add("MODEL_API_KEY", api_key)

    def progress(message: str) -> None:
        ctx.emit("log", {"level": "info", "message": message, "source": "installer"})

    executable = await asyncio.to_thread(ensure_installed, architecture, log=progress)
    configuration = configuration_of(ctx.input, spec)
    spec_files = await asyncio.to_thread(_prepare_workspace, ctx)
    workdir = f"{SANDBOX_WORKSPACE}/{cwd}" if cwd else SANDBOX_WORKSPACE
    request = RunRequest(
        task_type=ctx.task_type,
        prompt=build_prompt(ctx.task_type, configuration, spec_files=spec_files),
        model=ModelEndpoint(
            provider=model.get("provider", "openai"),
            base_url=model["base_url"],
            name=model["name"],
            api_key_env=architecture.key_env,
        ),
        install_dir=str(install_dir(architecture)),
        executable=str(executable),
        workspace=workdir,
        home=f"{SANDBOX_WORKSPACE}/{HOME}",
        title=f"task {ctx.task_uuid[:8]}",
        read_files=tuple(dict.fromkeys([*configuration.specs, *spec_files])),
        edit_files=configuration.files,
        test_command=configuration.test_command,
        options=dict(spec.get("architecture_options") or {}),
    )
    launch = await asyncio.to_thread(architecture.launch, request)
    await asyncio.to_thread(_write_home_files, ctx, launch.files)
    launch.env[architecture.key_env] = api_key
    converter = converter_for(
        name, workspace=workdir, id_prefix=ctx.task_uuid[:8], **launch.converter_options
    )
    port = urlsplit(model["base_url"]).port or (443 if model["base_url"][:5] == "https" else 80)
    allow = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    run_spec = spec
    if network == "none":  # "host" reaches the model anyway (and the docker backend refuses
        # allow-lists: with it, a CLI needs network "host")
        hosts = list(dict.fromkeys([*spec.get("allow_hosts", []), allow]))
        run_spec = {**spec, "allow_hosts": hosts}
    return ArchitectureRun(architecture, launch, converter, run_spec, ctx.task_type)


def _prepare_workspace(ctx: TaskContext) -> list[str]:
    """Create ``specs/``, ``tests/``, ``artifacts/`` and the private HOME; return the files
    under ``specs/`` (workspace-relative, sorted, at most 50)."""
    for folder in (*WORKSPACE_DIRS, HOME):
        paths.make_dirs(ctx.workspace, folder)
    entries = paths.list_dir(ctx.workspace, "specs", recursive=True, limit=200)
    return sorted(e.path for e in entries if e.type == "file")[:50]


def _write_home_files(ctx: TaskContext, files: dict[str, str]) -> None:
    for relative, text in files.items():
        with paths.open_write(ctx.workspace, f"{HOME}/{relative}") as fh:
            fh.write(text.encode())


async def finish_result(
    ctx: TaskContext, run: ArchitectureRun, result: dict[str, Any], stderr: str
) -> None:
    """Add the run's facts to ``result`` (``architecture``, ``text``: the last assistant
    message, ``logs``: the raw transcript files kept under ``.agent/runs/<task>/``) and, for
    ``plan``, save the answer as ``artifacts/plan.md``."""
    result["architecture"] = run.architecture.name
    if run.last_message:
        result["text"] = ctx.mask(run.last_message)
    folder = f"{RUNS}/{ctx.task_uuid}"
    logs = {f"{folder}/stdout.log": "\n".join(run.stdout_lines), f"{folder}/stderr.log": stderr}

    def write() -> list[str]:
        written = []
        for path, text in logs.items():
            if text:
                with paths.open_write(ctx.workspace, path) as fh:
                    fh.write(ctx.mask(text).encode())
                written.append(path)
        if run.task_type == "plan" and run.last_message:
            # The CLIs plan in their read-only modes, so the server writes the answer down.
            with paths.open_write(ctx.workspace, PLAN_FILE) as fh:
                fh.write(ctx.mask(run.last_message).encode())
            written.append(PLAN_FILE)
        return written

    result["logs"] = await asyncio.to_thread(write)
