"""Secrets of one run: which ones the agent spec asks for, injecting them, masking them.

An agent spec (kinds ``command`` and ``llm``) names the secrets its sandboxed processes get::

    "secrets": ["GITHUB_TOKEN",                          # an environment variable
                {"name": "NPM_TOKEN", "as": "env"},
                {"name": "DEPLOY_KEY", "as": "file"},        # $AGENT_SECRETS_DIR/DEPLOY_KEY
                {"name": "KUBE_CONF", "as": "file", "path": "kube/config"}]

``env`` secrets are added to the environment of every command the task runs in the sandbox
(the command itself; an ``llm`` agent's ``shell``/``python``/``apply_patch`` tools and its
stdio MCP servers).

``file`` secrets are written, before the runner starts, *inside* the session's sandbox, to its
private ``/tmp`` tmpfs: ``/tmp/.secrets/<path>`` (``path`` defaults to the name; the directory
is ``AGENT_SECRETS_DIR`` in the environment), mode 0600 in a 0700 directory, by a small command
that reads the value from its stdin (never from its arguments). The session sandbox is
long-lived and shared by the session's tasks, so a per-task mount at ``/run/secrets`` is not
possible (its root is read-only); and the workspace is not used because it is a host directory
that the file API, share links, exports and snapshots can read. The directory is removed
(``rm -rf``) when the task ends, whatever its outcome; a stopped sandbox loses it with its
tmpfs. (In the ``unisolated`` tier, which isolates nothing, ``/tmp`` is the host's.)

Every value the session's runs may use (team and session secrets, named by the spec or not) is
masked in the run's events, streamed output, task result and error, and in this process's log
records while the task runs (``sessions.services.masking``). A named secret that does not exist
fails the task with ``secret_not_found`` (``details.name``) before anything runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from sandboxes.base import SandboxError
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_ensure, sandbox_spec
from sessions.services import masking
from sessions.services.events import EventBuffer

_NAME = {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]*$", "maxLength": 128}
_COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"

SECRETS_SPEC_SCHEMA: dict[str, Any] = {
    "description": "Team or session secrets given to the sandboxed processes: a name (an "
    "environment variable) or {name, as: env|file, path?}; a file is "
    "$AGENT_SECRETS_DIR/<path or name> in the sandbox's /tmp, removed after the task.",
    "type": "array",
    "maxItems": 50,
    "items": {
        "oneOf": [
            _NAME,
            {
                "type": "object",
                "properties": {
                    "name": _NAME,
                    "as": {"enum": ["env", "file"]},
                    "path": {
                        "description": "File name below $AGENT_SECRETS_DIR (only with as: "
                        "file), e.g. 'id_ed25519' or 'kube/config'.",
                        "type": "string",
                        "maxLength": 200,
                        "pattern": f"^{_COMPONENT}(/{_COMPONENT})*$",
                    },
                },
                "required": ["name"],
                "additionalProperties": False,
                "if": {"required": ["path"]},
                "then": {"required": ["as"], "properties": {"as": {"const": "file"}}},
            },
        ]
    },
}

# Run inside the sandbox: $1 is the relative file path, the value arrives on stdin. Prints the
# directory (for AGENT_SECRETS_DIR).
_WRITE = (
    'set -eu; umask 077; d="${TMPDIR:-/tmp}/.secrets"; f="$d/$1"; mkdir -p "$d"; '
    'chmod 700 "$d"; mkdir -p "$(dirname "$f")"; rm -f "$f"; cat > "$f"; printf %s "$d"'
)
_REMOVE = 'rm -rf "${TMPDIR:-/tmp}/.secrets"'


@dataclass(frozen=True)
class SecretRequest:
    """One entry of ``spec.secrets``: ``name``, ``as_`` (``env``/``file``), file ``path``."""

    name: str
    as_: str = "env"
    path: str = ""


def requests_of(spec: dict[str, Any]) -> list[SecretRequest]:
    """The entries of ``spec.secrets`` (already schema-checked), normalised."""
    out = []
    for item in spec.get("secrets") or []:
        if isinstance(item, str):
            out.append(SecretRequest(item))
        else:
            as_ = item.get("as", "env")
            path = item.get("path") or (item["name"] if as_ == "file" else "")
            out.append(SecretRequest(item["name"], as_, path))
    return out


@dataclass
class RunSecrets:
    """The secrets of one task run (see the module docstring).

    Use: ``await open(session=, spec=, buffer=)`` before the runner starts (raises
    ``SecretNotFound`` / ``SecretUnreadable``, or a sandbox error when a file cannot be
    written), pass ``env`` to the runner, :meth:`mask` the outcome, ``await remove_files()``
    when the runner is done and ``await close()`` when the task's status is recorded.
    """

    values: dict[str, str] = field(default_factory=dict, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    masker: masking.Masker = field(default_factory=masking.Masker, repr=False)
    wrote_files: bool = False
    _session: Any = field(default=None, repr=False)
    _sandbox: Any = field(default=None, repr=False)
    _handle: int | None = None

    async def open(self, *, session: Any, spec: dict[str, Any], buffer: EventBuffer) -> None:
        from accounts.secrets import secrets_for_run
        from sessions.execution import db_call

        requests = requests_of(spec)
        self.values = await db_call(secrets_for_run)(session, require=[r.name for r in requests])
        if not self.values:
            return
        self.masker = masking.Masker(self.values)
        buffer.set_masker(self.masker)
        self._handle = masking.register(session.pk, self.values)
        for r in requests:
            if r.as_ == "env":
                self.env[r.name] = self.values[r.name]
        files = [r for r in requests if r.as_ == "file"]
        if files:
            self._session = session
            self._sandbox = await db_call(sandbox_spec)(session=session, agent_spec=spec)
            await sandbox_ensure(session=session, spec=self._sandbox, emit=buffer.emit)
            for r in files:
                self.wrote_files = True
                out = await self._exec(["sh", "-c", _WRITE, "sh", r.path], self.values[r.name])
                self.env["AGENT_SECRETS_DIR"] = out

    async def _exec(self, argv: list[str], stdin: str | None = None) -> str:
        """Run ``argv`` in the sandbox; its stdout. Raises SandboxError on a non-zero exit."""
        execution = await get_backend().exec(
            self._sandbox, argv, stdin=stdin.encode() if stdin is not None else None
        )
        out, code = b"", None
        async for event in execution:
            if event.stream == "stdout":
                out += event.data
            elif event.stream == "exit":
                code = event.exit_code
        if code != 0:
            raise SandboxError(
                "A secret file could not be written in the sandbox.",
                code="secret_injection_failed",
                details={"exit_code": code},
            )
        return out.decode(errors="replace")

    def mask(self, data: Any) -> Any:
        """``data`` (a string or JSON) with every value of this run masked."""
        return self.masker.mask_data(data)

    async def remove_files(self) -> None:
        """Remove the secret files of this run from the sandbox, if it still runs
        (idempotent; failures are ignored: a stopped sandbox has lost its /tmp anyway)."""
        if not self.wrote_files:
            return
        self.wrote_files = False
        with contextlib.suppress(Exception):
            if await get_backend().is_running(self._sandbox.sandbox_id):
                await self._exec(["sh", "-c", _REMOVE])

    async def close(self) -> None:
        """Remove the secret files and stop masking this run's values (idempotent)."""
        await self.remove_files()
        if self._handle is not None:
            masking.unregister(self._handle)
            self._handle = None
