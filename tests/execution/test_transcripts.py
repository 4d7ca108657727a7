"""Transcript converters (issue 12) on the recorded real transcripts in
``tests/fixtures/transcripts/`` (OpenCode 1.18.33, Codex CLI 0.171.0, Aider 0.86.2): pure
functions, no database, no process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sessions.runners.transcripts import CONVERTERS, Emit, converter_for
from sessions.runners.transcripts.aider import tokens
from sessions.runners.transcripts.base import MAX_LOG_CHARS, PHASES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
TEST_CMD = "python -m pytest -q"
_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}

# The data shapes the server's other emitters use for these types (the llm runner, the command
# runner, runtime_client.notebook, the console's event views); the repository has no per-type
# JSON schema yet, so this is it, and every emitted event must match.
SCHEMAS: dict[str, dict[str, Any]] = {
    "message.delta": {"required": ["message_id", "text"],
                      "properties": {"message_id": _STR, "text": _STR}},
    "message.completed": {"required": ["message_id", "role", "text"],
                          "properties": {"message_id": _STR, "role": {"const": "assistant"},
                                         "text": _STR}},
    "tool.call": {"required": ["call_id", "name", "arguments"],
                  "properties": {"call_id": _STR, "name": _STR}},
    "tool.result": {"required": ["call_id", "name", "output", "is_error"],
                    "properties": {"call_id": _STR, "name": _STR, "output": _STR,
                                   "is_error": {"type": "boolean"},
                                   "exit_code": {"type": ["integer", "null"]},
                                   "truncated": {"const": True}}},
    "file.changed": {"required": ["path", "change"],
                     "properties": {"path": {"type": "string", "minLength": 1},
                                    "change": {"enum": ["created", "modified", "deleted"]},
                                    "diff": _STR, "additions": _INT, "deletions": _INT}},
    "usage": {"required": ["step", "prompt_tokens", "completion_tokens", "cached_tokens",
                           "reasoning_tokens"],
              "properties": {"step": _INT, "prompt_tokens": _INT, "completion_tokens": _INT,
                             "cached_tokens": _INT, "reasoning_tokens": _INT,
                             "cache_write_tokens": _INT, "cost_usd": {"type": "number"}}},
    "error": {"required": ["code", "message", "details"],
              "properties": {"code": _STR, "message": _STR, "details": {"type": "object"}}},
    "log": {"required": ["level", "message", "source"],
            "properties": {"level": {"enum": ["info", "warning"]}, "message": _STR,
                           "source": {"enum": sorted(CONVERTERS)}}},
}  # fmt: skip

FIX_RUNS = [
    ("opencode", "opencode/transcript-fix.jsonl", "/tmp/issue12/opencode/ws-fix", "answering"),
    ("opencode", "opencode/transcript-fix-bwrap.jsonl", "/tmp/issue12/opencode/ws-fix-bwrap",
     "answering"),
    ("codex", "codex/transcript-fix.jsonl", "/tmp/issue12/codex/ws-fix", "answering"),
    ("aider", "aider/transcript-fix.txt", "/tmp/issue12/aider/ws-fix", "testing"),
]  # fmt: skip
ALL_RUNS = sorted(
    (folder, path.relative_to(FIXTURES).as_posix())
    for folder in ("opencode", "codex", "aider")
    for path in (FIXTURES / folder).glob("transcript-*.*")
)


def options(arch: str, workspace: str = "/workspace") -> dict[str, Any]:
    return {"workspace": workspace, **({"test_cmd": TEST_CMD} if arch == "aider" else {})}


def lines(path: str) -> list[str]:
    return (FIXTURES / path).read_text(encoding="utf-8").splitlines()


def convert(arch: str, path: str, exit_code: int = 0, **kwargs: Any) -> tuple[Any, list[Emit]]:
    converter = converter_for(arch, **{**options(arch), **kwargs})
    emits: list[Emit] = []
    for line in lines(path):
        emits.extend(converter.feed(line))
    emits.extend(converter.finish(exit_code))
    return converter, emits


def check_shapes(emits: list[Emit]) -> None:
    for emit in emits:
        schema = {"type": "object", **SCHEMAS[emit.type]}
        jsonschema.validate(emit.data, schema)
        json.dumps(emit.data)  # storable as an event's JSON data


def of(emits: list[Emit], kind: str) -> list[dict[str, Any]]:
    return [e.data for e in emits if e.type == kind]


def expected_usage(arch: str, path: str) -> tuple[int, int]:
    """(input, output) tokens summed straight from the transcript."""
    if arch == "aider":
        found = [re.match(r"Tokens: (\S+) sent, (\S+) received", x) for x in lines(path)]
        pairs = [(tokens(m[1]), tokens(m[2])) for m in found if m]
        return sum(p for p, _ in pairs), sum(c for _, c in pairs)
    events = [json.loads(x) for x in lines(path)]
    if arch == "opencode":
        steps = [e["part"]["tokens"] for e in events if e["type"] == "step_finish"]
        return sum(t["input"] for t in steps), sum(t["output"] for t in steps)
    turns = [e["usage"] for e in events if e["type"] == "turn.completed"]
    return sum(u["input_tokens"] for u in turns), sum(u["output_tokens"] for u in turns)


@pytest.mark.parametrize(("arch", "path", "workspace", "phase"), FIX_RUNS)
def test_fix_run(arch: str, path: str, workspace: str, phase: str) -> None:
    converter, emits = convert(arch, path, workspace=workspace)
    check_shapes(emits)
    kinds = [e.type for e in emits]

    # assistant text: one delta and a completed message with the same id, in that order
    completed = of(emits, "message.completed")
    assert completed and all(m["text"].strip() for m in completed)
    for message in completed:
        [delta] = [
            d for d in of(emits, "message.delta") if d["message_id"] == message["message_id"]
        ]
        assert delta["text"] == message["text"]
    assert kinds.index("message.delta") < kinds.index("message.completed")
    assert kinds.index("message.completed") < kinds.index("tool.call")

    # every tool call gets one result after it; the pytest run passed with exit code 0
    calls, results = of(emits, "tool.call"), of(emits, "tool.result")
    assert [c["call_id"] for c in calls] == [r["call_id"] for r in results]
    assert len({c["call_id"] for c in calls}) == len(calls)
    for call in calls:
        at = next(i for i, e in enumerate(emits) if e.type == "tool.call" and e.data is call)
        assert any(e.type == "tool.result" and e.data["call_id"] == call["call_id"]
                   for e in emits[at + 1:])  # fmt: skip
    [test] = [c for c in calls if "pytest" in str(c["arguments"].get("command", ""))]
    [result] = [r for r in results if r["call_id"] == test["call_id"]]
    assert "1 passed" in result["output"]
    assert result["exit_code"] == 0 and result["is_error"] is False

    # the edit: calc.py, workspace-relative, before the test run
    [changed] = of(emits, "file.changed")
    assert changed["path"] == "calc.py" and changed["change"] == "modified"
    assert converter.changed_files == ["calc.py"]
    assert kinds.index("file.changed") < emits.index(next(
        e for e in emits if e.type == "tool.result" and e.data is result))  # fmt: skip
    if arch == "opencode":
        assert "-    return a - b\n+    return a + b" in changed["diff"]
        assert (changed["additions"], changed["deletions"]) == (1, 1)
    if arch in ("opencode", "codex"):  # the answer comes last
        assert emits[-1].type in ("message.completed", "usage")
        assert kinds[::-1].index("message.completed") < kinds[::-1].index("tool.result")

    usage = of(emits, "usage")
    totals = (sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage))
    assert totals == expected_usage(arch, path)
    assert [u["step"] for u in usage] == list(range(1, len(usage) + 1))
    assert converter.phase == phase
    assert converter.failed is None
    assert not of(emits, "error")


def test_usage_totals_are_the_transcripts() -> None:
    _, opencode = convert("opencode", "opencode/transcript-fix.jsonl")
    assert [(u["prompt_tokens"], u["completion_tokens"]) for u in of(opencode, "usage")] == [
        (1200, 20), (1300, 30), (1400, 15), (1500, 12)]  # fmt: skip
    _, codex = convert("codex", "codex/transcript-fix.jsonl")
    assert of(codex, "usage") == [{"step": 1, "prompt_tokens": 5400, "completion_tokens": 135,
                                   "cached_tokens": 0, "reasoning_tokens": 0}]  # fmt: skip
    _, aider = convert("aider", "aider/transcript-reflect.txt")
    assert [(u["prompt_tokens"], u["completion_tokens"]) for u in of(aider, "usage")] == [
        (2500, 31), (3100, 47)]  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "path", "code", "status", "text"),
    [
        ("opencode", "opencode/transcript-error.jsonl", "provider_error", 500, "HTTP 500"),
        ("opencode", "opencode/transcript-auth.jsonl", "provider_error", 401, "HTTP 401"),
        ("opencode", "opencode/transcript-streamerr.jsonl", "agent_error", None,
         "scripted mid-stream failure"),
        ("codex", "codex/transcript-error.jsonl", "provider_error", None, "high demand"),
        ("codex", "codex/transcript-error-retries.jsonl", "provider_error", None, "high demand"),
        ("codex", "codex/transcript-error-401.jsonl", "provider_error", 401, "401"),
        ("aider", "aider/transcript-error-401.txt", "provider_error", None, "AuthenticationError"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("exit_code", [0, 1])
def test_error_run(
    arch: str, path: str, code: str, status: int | None, text: str, exit_code: int
) -> None:
    """The failure is read from the transcript, whatever the exit code (Aider exits 0)."""
    converter, emits = convert(arch, path, exit_code)
    check_shapes(emits)
    [error] = of(emits, "error")  # one, even when Codex repeats it in turn.failed
    assert error["code"] == code and text in error["message"]
    assert error["details"].get("status") == status
    assert converter.failed == {"code": code, "message": error["message"]}
    assert not of(emits, "message.completed") and not of(emits, "file.changed")


def test_codex_retry_notices_are_logs_not_the_failure() -> None:
    """With request_max_retries, Codex prints "Reconnecting... n/N" error lines before the
    final one: warnings, while the failure is the message after the last retry."""
    converter, emits = convert("codex", "codex/transcript-error-retries.jsonl", 1)
    retries = [e for e in of(emits, "log") if e.get("kind") == "retry"]
    assert [r["message"][:17] for r in retries] == ["Reconnecting... 1", "Reconnecting... 2"]
    assert converter.failed is not None
    assert not converter.failed["message"].startswith("Reconnecting")


def test_aider_401_with_exit_code_0() -> None:
    converter, emits = convert("aider", "aider/transcript-error-401.txt", 0)
    assert converter.failed is not None and "Check your API key" in converter.failed["message"]
    assert emits[-1].type == "error"  # the banner before it is log lines
    assert {e.type for e in emits[:-1]} == {"log"}


def test_aider_reflection() -> None:
    """A wrong edit, the failing auto-test sent back, a second edit, the passing test."""
    converter, emits = convert("aider", "aider/transcript-reflect.txt")
    check_shapes(emits)
    kinds = [e.type for e in emits if e.type != "log"]
    assert kinds == ["message.delta", "message.completed", "usage", "file.changed", "tool.call",
                     "tool.result"] * 2  # fmt: skip
    first, second = of(emits, "tool.result")
    assert first["is_error"] is True and "1 failed" in first["output"]
    assert "assert 6 == 5" in first["output"]
    assert second["is_error"] is False and second["exit_code"] == 0
    assert "1 passed" in second["output"]
    assert converter.phase == "testing" and converter.failed is None
    assert converter.changed_files == ["calc.py"]


def test_aider_suggested_command_is_logged_not_run() -> None:
    _, emits = convert("aider", "aider/transcript-fix.txt")
    assert any("did not run the suggested command: python -m pytest -q" in log["message"]
               for log in of(emits, "log"))  # fmt: skip
    [message] = of(emits, "message.completed")
    assert message["text"].startswith("The bug is in `add`")
    assert message["text"].endswith("```")  # up to the Tokens: line, trimmed


def test_opencode_tool_errors() -> None:
    converter, emits = convert("opencode", "opencode/transcript-toolerr.jsonl")
    check_shapes(emits)
    edit, invalid = of(emits, "tool.result")
    assert edit["is_error"] and "Could not find oldString" in edit["output"]
    assert invalid["name"] == "invalid" and invalid["is_error"]
    assert not of(emits, "file.changed") and converter.changed_files == []
    assert converter.failed is None and converter.phase == "answering"


def test_opencode_retries_are_logged() -> None:
    _, emits = convert("opencode", "opencode/transcript-streamerr.jsonl", 1)
    retries = [x for x in of(emits, "log") if "retried" in x["message"]]
    assert len(retries) == 5 and all(x["level"] == "warning" for x in retries)


def test_codex_retry_is_invisible() -> None:
    converter, emits = convert("codex", "codex/transcript-retry.jsonl")
    assert [e.type for e in emits] == ["message.delta", "message.completed", "usage"]
    assert converter.failed is None and converter.phase == "answering"


@pytest.mark.parametrize("arch", ["opencode", "codex"])
@pytest.mark.parametrize(
    "line",
    [
        '{"type": "brand_new_event", "part": {"x": 1}}',  # unknown type
        "warning: something the CLI printed that is not JSON",
        '{"type":"text","timestamp":1796029678023,"part":{"id":"prt_1","text":"cut he',  # garbled
        "[1, 2, 3]",
    ],
)
def test_unknown_and_garbled_lines_become_logs(arch: str, line: str) -> None:
    converter = converter_for(arch)
    emits = converter.feed(line)
    assert emits == [Emit("log", {"level": "info", "message": line, "source": arch})]
    assert converter.failed is None and converter.finish(0) == []


def test_aider_unknown_line_after_reply_is_logged() -> None:
    converter = converter_for("aider")  # no test_cmd: nothing is taken for test output
    for line in ("Aider v0.86.2", "", "Hello.", "Tokens: 10 sent, 2 received."):
        converter.feed(line)
    assert converter.feed("something else") == [
        Emit("log", {"level": "info", "message": "something else", "source": "aider"})
    ]


def test_long_lines_are_truncated() -> None:
    line = "x" * (MAX_LOG_CHARS * 5)
    [log] = converter_for("codex").feed(line)
    assert log.data["truncated"] is True and len(log.data["message"]) < MAX_LOG_CHARS + 100
    assert log.data["message"].startswith("xxx")


def test_blank_lines_are_not_events() -> None:
    assert converter_for("opencode").feed("") == [] and converter_for("codex").feed("  ") == []


@pytest.mark.parametrize(("arch", "path"), ALL_RUNS)
def test_deterministic_and_schema_valid(arch: str, path: str) -> None:
    first, a = convert(arch, path, 1)
    second, b = convert(arch, path, 1)
    assert a == b and a
    assert (first.phase, first.failed, first.changed_files) == (
        second.phase, second.failed, second.changed_files)  # fmt: skip
    check_shapes(a)
    assert first.phase in (None, *PHASES)


def test_ids_take_the_prefix() -> None:
    _, emits = convert("aider", "aider/transcript-fix.txt", id_prefix="task42-")
    assert of(emits, "message.completed")[0]["message_id"] == "task42-aider-message-1"
    _, emits = convert("codex", "codex/transcript-fix.jsonl", id_prefix="task42-")
    assert all(c["call_id"].startswith("task42-codex-") for c in of(emits, "tool.call"))


def test_nonzero_exit_without_error_fails() -> None:
    converter, emits = convert("codex", "codex/transcript-fix.jsonl", 2)
    assert converter.failed == {"code": "command_failed",
                                "message": "The codex CLI exited with code 2."}  # fmt: skip
    assert of(emits, "error")[-1]["details"] == {"exit_code": 2}
    assert converter.finish(2) == []  # once


def test_open_items_are_closed_at_the_end() -> None:
    started = lines("codex/transcript-fix.jsonl")[:4]  # killed while cat runs
    converter = converter_for("codex")
    emits = [e for line in started for e in converter.feed(line)]
    emits += converter.finish(137)
    [result] = of(emits, "tool.result")
    assert result["is_error"] and converter.failed["code"] == "command_failed"  # type: ignore[index]


def test_codex_warning_item_is_not_fatal() -> None:
    converter = converter_for("codex")
    line = '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"no model"}}'
    assert converter.feed(line) == [
        Emit("log", {"level": "warning", "message": "no model", "source": "codex"})
    ]
    assert converter.failed is None


def test_aider_retried_error_is_a_warning() -> None:
    converter = converter_for("aider")
    emits = [e for line in ("Aider v0.86.2", "", "litellm.InternalServerError: boom",
                            "The API provider's servers are down or overloaded.",
                            "Retrying in 0.2 seconds...", "Done.", "Tokens: 1.2M sent, 3 received.")
             for e in converter.feed(line)]  # fmt: skip
    emits += converter.finish(0)
    assert converter.failed is None and not of(emits, "error")
    assert any(x["level"] == "warning" and "boom" in x["message"] for x in of(emits, "log"))
    assert of(emits, "usage")[0]["prompt_tokens"] == 1_200_000


def test_paths_outside_the_workspace_stay_absolute() -> None:
    converter = converter_for("opencode", workspace="/workspace/")
    assert converter.relative("/workspace/src/a.py") == "src/a.py"
    assert converter.relative("/etc/passwd") == "/etc/passwd"
    assert converter.relative("/workspace-other/a.py") == "/workspace-other/a.py"
    assert converter.relative("src/./b.py") == "src/b.py"


def test_tokens() -> None:
    assert [tokens(x) for x in ("59", "2.5k", "12k", "1.5M", "", None)] == [
        59, 2500, 12000, 1_500_000, 0, 0]  # fmt: skip


def test_registry() -> None:
    assert set(CONVERTERS) == {"opencode", "codex", "aider", "claude-code", "generic"}
    generic = converter_for("generic")
    assert generic.passthrough and generic.feed("anything") == []
    assert generic.finish(3) == [] and generic.failed["code"] == "command_failed"  # type: ignore[index]
    with pytest.raises(ValueError, match="Unknown architecture"):
        converter_for("no-such-cli")
