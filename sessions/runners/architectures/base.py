"""What a coding-agent architecture is: a pinned CLI, how to point it at a model, how to start it.

An architecture (``spec.architecture`` of a ``command`` agent; issue 12) turns one task into one
non-interactive run of a coding-agent CLI inside the session's sandbox:

- :class:`Package`: where the CLI comes from (npm or PyPI, pinned) and which file inside the
  installed tree is its executable (``install.py`` installs it on the server, outside the
  sandbox, and the sandbox sees the tree read-only at the same path);
- :meth:`Architecture.launch`: the argv, environment and private files (config, model catalog)
  of one run, from a :class:`RunRequest` (the prompt, the task type, the model endpoint, the
  sandbox paths). The API key never appears in argv or in a file: it is passed in one
  environment variable (``api_key_env``) that the CLI's configuration names;
- the transcript converter (``sessions.runners.transcripts``) of the same name reads its stdout.

The settings each CLI needs to run offline but for the model (no update checks, telemetry or
model-list downloads) come from the measurements in ``docs/dev/coding-agent-clis.md``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class Package:
    """A pinned CLI distribution.

    Attributes:
        manager: ``npm`` (installed with ``npm install --prefix``) or ``pypi`` (a virtualenv
            for the sandbox's ``python3``).
        name, version: the package and its exact version.
        executables: paths relative to the install directory, the first existing one is run
            (npm packages ship platform binaries under different names across versions).
        extra: other packages installed next to it (``name==version`` / ``name@version``).
    """

    manager: Literal["npm", "pypi"]
    name: str
    version: str
    executables: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """``name@version`` (npm) or ``name==version`` (PyPI)."""
        return f"{self.name}@{self.version}" if self.manager == "npm" else (
            f"{self.name}=={self.version}"
        )  # fmt: skip


@dataclass(frozen=True)
class ModelEndpoint:
    """The model a run talks to.

    Attributes:
        provider: ``openai`` (any OpenAI-compatible server) or ``anthropic``.
        base_url: the API root as the agent spec gives it (``https://host/v1`` for OpenAI
            dialects; Anthropic's without ``/v1``).
        name: the model name sent to the provider.
        api_key_env: the environment variable the CLI reads the key from (the runner sets it;
            its value is masked in every event).
    """

    provider: str
    base_url: str
    name: str
    api_key_env: str = "AGENT_MODEL_API_KEY"

    @property
    def openai_base_url(self) -> str:
        """The base URL with a ``/v1`` suffix, as OpenAI-compatible clients want it."""
        url = self.base_url.rstrip("/")
        return url if url.endswith("/v1") else f"{url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The base URL without ``/v1`` (Anthropic clients append ``/v1/messages``)."""
        return self.base_url.rstrip("/").removesuffix("/v1")


@dataclass(frozen=True)
class RunRequest:
    """One run, as an architecture needs it.

    Attributes:
        task_type: ``run`` | ``complete`` | ``plan`` | ``generate`` | ``fix`` (others act as
            ``run``).
        prompt: the full instructions (``prompts.build_prompt``).
        model: the endpoint.
        install_dir: where the package is installed (absolute, visible in the sandbox).
        executable: the CLI's executable (absolute).
        workspace: the run's working directory in the sandbox (``/workspace`` or below).
        home: the run's private ``HOME`` in the sandbox (``/workspace/.agent/home``).
        title: a short title (task id), for CLIs that otherwise ask the model for one.
        read_files: workspace-relative files the CLI should read (specs, tests).
        edit_files: workspace-relative files it may edit (Aider adds them to its chat).
        test_command: the command that runs the tests (Aider's ``--test-cmd``).
        options: ``spec.architecture_options`` (extra CLI arguments, per architecture).
    """

    task_type: str
    prompt: str
    model: ModelEndpoint
    install_dir: str
    executable: str
    workspace: str = "/workspace"
    home: str = "/workspace/.agent/home"
    title: str = ""
    read_files: tuple[str, ...] = ()
    edit_files: tuple[str, ...] = ()
    test_command: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Launch:
    """How to start one run.

    Attributes:
        argv: the command line (never holds the key).
        env: environment variables besides the key.
        files: ``{path under HOME: text}`` written before the run (config files).
        stdin: text given on stdin (OpenCode reads its prompt there), else None.
        converter_options: extra keyword arguments for the transcript converter.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    converter_options: dict[str, Any] = field(default_factory=dict)


class Architecture(abc.ABC):
    """One coding-agent CLI. Subclasses set :attr:`name`, :attr:`package`,
    :attr:`providers` and implement :meth:`launch`."""

    name: ClassVar[str]
    package: ClassVar[Package]
    providers: ClassVar[tuple[str, ...]] = ("openai",)
    summary: ClassVar[str] = ""
    key_env: ClassVar[str] = "AGENT_MODEL_API_KEY"  # the variable that carries the API key

    @abc.abstractmethod
    def launch(self, run: RunRequest) -> Launch:
        """The argv, environment and HOME files of ``run``."""

    @staticmethod
    def common_env(run: RunRequest) -> dict[str, str]:
        """Environment every CLI gets: its private HOME and XDG directories (each run
        writes state there, never in the user's workspace files), no colours, no pager."""
        home = run.home
        return {
            "HOME": home,
            "XDG_CONFIG_HOME": f"{home}/.config",
            "XDG_DATA_HOME": f"{home}/.local/share",
            "XDG_STATE_HOME": f"{home}/.local/state",
            "XDG_CACHE_HOME": f"{home}/.cache",
            "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's own private tmpfs
            "TERM": "dumb",
            "NO_COLOR": "1",
            "PAGER": "cat",
            "GIT_PAGER": "cat",
            "LANG": "C.UTF-8",
        }
