"""Aider (``aider-chat`` 0.86.2): plain stdout → events, by heuristics.

Source: ``docs/dev/coding-agent-clis.md`` and the recordings in
``tests/fixtures/transcripts/aider/`` (run with ``--no-pretty --no-fancy-input``, TERM=dumb,
``--test-cmd … --auto-test``, ``--edit-format diff``). Aider has no JSON output and no tool
calls: edits are SEARCH/REPLACE blocks inside the assistant text and tests run only through
``--test-cmd``. The heuristics, in the order the output comes:

1. **Banner** (before the first other line): ``Aider v…``, ``Model:``, ``Git repo:``,
   ``Repo-map:``, ``Added X to the chat.``, terminal/analytics notices → ``log``; blank lines
   are skipped.
2. **Reply**: every line up to a ``Tokens: 2.5k sent, 59 received.`` status line is assistant
   text → ``message.delta`` + ``message.completed`` (leading/trailing blank lines trimmed). The
   status line → ``usage`` (``k``/``M`` suffixes to integers: Aider rounds, e.g. ``2.5k`` →
   2500; ``cache write``/``cache hit`` and ``Cost: $x message`` when printed).
3. **After a reply**: ``Applied edit to X`` → ``file.changed`` (modified, no diff); a line
   equal to a command the reply suggested in a ```` ```bash ```` block is Aider echoing a
   suggestion it did not run (``--yes-always`` refuses them) → ``log``; ``Did not apply
   edit…``/``did not conform…``/``Only N reflections allowed…`` → ``log`` warning. When
   ``test_cmd`` is given and an edit was applied, the next other line starts the auto-test's
   output (Aider prints no command line and no exit code): ``tool.call`` ``{"name": "test",
   "arguments": {"command": test_cmd}}``, its lines collected until ``Added N lines of output
   to the chat.`` (Aider adds the output only when the tests failed: ``tool.result``
   ``is_error`` true, ``exit_code`` None, and the next lines are the model's reflection
   reply, step 2) or the end of the run (passed: ``exit_code`` 0). Other lines → ``log``.
4. **Errors**: a line ``litellm.XError: …`` (or ``XError: …`` outside a reply) starts an
   error block, continued up to a blank line. ``Retrying in N seconds...`` after it makes it a
   ``log`` warning; otherwise it is an ``error`` (``provider_error`` for litellm's, else
   ``agent_error``) and ``failed`` — Aider exits 0 after a 401, so this is the only sign.

Known gaps: lint output (``--auto-lint`` with errors) would be taken for test output; a
reply Aider sends after a failed SEARCH/REPLACE (without ``Added N lines``) becomes ``log``
lines. Nothing is dropped.
"""

from __future__ import annotations

import re

from sessions.runners.transcripts.base import Emit, TranscriptConverter

_BANNER = re.compile(
    r"^(Aider v\d|(Main |Weak |Editor )?[Mm]odel: |Git repo: |Repo-map: |Added .+ to the chat"
    r"|Analytics have been |Detected dumb terminal|Use /help|Cur working dir|Git working dir"
    r"|Warning|Note: |Newer aider version|Can't initialize|https?://)"
)
_TOKENS = re.compile(
    r"^Tokens: (?P<sent>[\d.,]+[kKmM]?) sent(?:, (?P<write>[\d.,]+[kKmM]?) cache write)?"
    r"(?:, (?P<hit>[\d.,]+[kKmM]?) cache hit)?, (?P<received>[\d.,]+[kKmM]?) received\."
    r"(?:\s*Cost: \$(?P<cost>[\d.]+) message)?"
)
_APPLIED = re.compile(r"^Applied edit to (?P<path>.+?)\s*$")
_ADDED_OUTPUT = re.compile(r"^Added \d+ lines? of output to the chat\.")
_WARNINGS = re.compile(
    r"^(Did not apply edit|The LLM did not conform|Only \d+ reflections allowed"
    r"|# \d+ SEARCH/REPLACE blocks? failed|Unable to )"
)
_ERROR = re.compile(r"^(?P<lib>litellm\.)?(?P<name>[A-Z]\w*(Error|Exception)): ")
_RETRY = re.compile(r"^Retrying in [\d.]+ seconds")
_SHELL_BLOCK = re.compile(r"^```(bash|sh|shell|console|zsh)\s*$")


def tokens(text: str | None) -> int:
    """``2.5k`` → 2500, ``1.2M`` → 1200000, ``59`` → 59, None → 0."""
    if not text:
        return 0
    text = text.replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        return round(float(number) * scale)
    except ValueError:
        return 0


class AiderConverter(TranscriptConverter):
    architecture = "aider"

    def __init__(
        self, workspace: str = "/workspace", *, id_prefix: str = "", test_cmd: str | None = None
    ) -> None:
        super().__init__(workspace, id_prefix=id_prefix)
        self.test_cmd = test_cmd
        self._state = "banner"  # banner → reply → after → (reply → after)…
        self._reply: list[str] = []
        self._suggested: set[str] = set()
        self._edited = False  # an edit was applied since the last reply
        self._test: list[str] | None = None  # the open auto-test output
        self._test_id = ""
        self._error: list[str] = []
        self._error_open = False
        self._rounds = 0

    def feed(self, line: str) -> list[Emit]:
        line = line.rstrip("\r")
        emits: list[Emit] = []
        if self._error:
            if _RETRY.match(line.strip()):
                text = " ".join([*self._error, line.strip()])
                self._error, self._error_open = [], False
                return [self.log(text, "warning")]
            if self._error_open and line.strip():
                self._error.append(line.strip())
                return []
            if not line.strip():
                self._error_open = False
                return []
            emits.append(self._raise())
        if (match := _ERROR.match(line)) and (match["lib"] or self._state != "reply"):
            emits.extend(self._close_reply(status=False))
            self._error, self._error_open = [line.strip()], True
            return emits
        if self._state == "banner":
            if not line.strip():
                return emits
            if _BANNER.match(line):
                return [*emits, self.log(line, "warning" if line.startswith("Warning") else "info")]
            self._state = "reply"
        if _TOKENS.match(line) and self._test is None:
            return [*emits, *self._close_reply(status=True, line=line)]
        if self._state == "reply":
            self._reply.append(line)
            return emits
        return [*emits, *self._after(line)]

    def flush(self) -> list[Emit]:
        emits = self._close_reply(status=False) if self._state == "reply" else []
        if self._test is not None:
            emits.append(self._close_test(passed=True))
        if self._error:
            emits.append(self._raise())
        return emits

    # -- the parts -------------------------------------------------------------------------

    def _after(self, line: str) -> list[Emit]:
        if self._test is not None:
            if _ADDED_OUTPUT.match(line):
                self._state = "reply"  # the failing output went back to the model
                return [self._close_test(passed=False), self.log(line)]
            self._test.append(line)
            return []
        if not line.strip():
            return []
        if match := _APPLIED.match(line):
            self._edited = True
            return [self.file_changed(match["path"])]
        if line.strip() in self._suggested:
            return [self.log(f"Aider did not run the suggested command: {line.strip()}")]
        if _WARNINGS.match(line):
            return [self.log(line, "warning")]
        if self.test_cmd and self._edited:
            self._edited = False
            self._test, self._test_id = [line], self.new_id("test")
            call = self.tool_call(self._test_id, "test", {"command": self.test_cmd},
                                  command=self.test_cmd)  # fmt: skip
            self.set_phase("testing")
            return [call]
        return [self.log(line)]

    def _close_reply(self, *, status: bool, line: str = "") -> list[Emit]:
        """The reply so far as a message; with the ``Tokens:`` status ``line``, its usage."""
        emits: list[Emit] = []
        text = "\n".join(self._reply).strip("\n")
        self._reply = []
        if text.strip():
            emits.extend(self.message(text, self.new_id("message")))
            self._suggested = _suggested_commands(text)
        if self._state in ("reply", "after"):
            self._state = "after"
        if status and (match := _TOKENS.match(line)):
            self._rounds += 1
            cost = float(match["cost"]) if match["cost"] else 0
            emits.append(self.usage(
                self._rounds, tokens(match["sent"]), tokens(match["received"]),
                tokens(match["hit"]), 0, cache_write_tokens=tokens(match["write"]),
                cost_usd=cost,
            ))  # fmt: skip
        return emits

    def _close_test(self, *, passed: bool) -> Emit:
        output = "\n".join(self._test or []).strip("\n")
        self._test = None
        return self.tool_result(self._test_id, "test", output, not passed,
                                exit_code=0 if passed else None)  # fmt: skip

    def _raise(self) -> Emit:
        first = _ERROR.match(self._error[0])
        text = " ".join(self._error)
        self._error, self._error_open = [], False
        name = first["name"] if first else "Error"
        code = "provider_error" if first and first["lib"] else "agent_error"
        return self.error(code, text, {"name": name})


def _suggested_commands(text: str) -> set[str]:
    """The lines of the reply's shell code blocks (Aider echoes them after the reply)."""
    commands: set[str] = set()
    inside = False
    for line in text.splitlines():
        if not inside:
            inside = bool(_SHELL_BLOCK.match(line.strip()))
        elif line.strip().startswith("```"):
            inside = False
        elif line.strip():
            commands.add(line.strip().removeprefix("$ "))
    return commands
