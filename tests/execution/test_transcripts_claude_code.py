"""The Claude Code transcript converter (issue 12) on the recorded real transcripts in
``tests/fixtures/transcripts/claude-code/`` (Claude Code 2.1.332 driven against ScriptedLLM by
that folder's ``drive.py``): pure functions, no database, no process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessions.runners.transcripts import CONVERTERS, ClaudeCodeConverter, Emit, converter_for
from sessions.runners.transcripts.base import PHASES
from tests.execution.test_transcripts import FIXTURES, check_shapes, of

ARCH = "claude-code"
FOLDER = FIXTURES / "claude-code"
RUNS = sorted(path.name for path in FOLDER.glob("transcript-*.jsonl"))


def lines(name: str) -> list[str]:
    return (FOLDER / name).read_text(encoding="utf-8").splitlines()


def events(name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in lines(name)]


def convert(
    name: str, exit_code: int = 0, **options: Any
) -> tuple[ClaudeCodeConverter, list[Emit]]:
    workspace = f"/tmp/cc/runs/ws-{name.removeprefix('transcript-').removesuffix('.jsonl')}"
    converter = converter_for(ARCH, **{"workspace": workspace, **options})
    assert isinstance(converter, ClaudeCodeConverter)
    emits: list[Emit] = []
    for line in lines(name):
        emits.extend(converter.feed(line))
    emits.extend(converter.finish(exit_code))
    return converter, emits


def result_of(name: str) -> dict[str, Any]:
    [result] = [e for e in events(name) if e["type"] == "result"]
    return result


def test_registered() -> None:
    assert CONVERTERS[ARCH] is ClaudeCodeConverter
    converter = converter_for(ARCH, workspace="/w", id_prefix="t-")
    assert converter.architecture == ARCH and not converter.passthrough


@pytest.mark.parametrize("name", ["transcript-fix.jsonl", "transcript-fix-partial.jsonl"])
def test_fix_run(name: str) -> None:
    converter, emits = convert(name)
    check_shapes(emits)
    kinds = [e.type for e in emits]

    # two assistant texts: the deltas of each add up to its completed text, before it
    completed = of(emits, "message.completed")
    assert [m["text"] for m in completed] == [
        "Let me look at the code.",
        "Fixed `add` in calc.py (it subtracted); the test passes now.",
    ]
    for message in completed:
        deltas = [d for d in of(emits, "message.delta") if d["message_id"] == message["message_id"]]
        assert "".join(d["text"] for d in deltas) == message["text"]
    if name == "transcript-fix-partial.jsonl":  # streamed: one delta per text_delta
        assert len(of(emits, "message.delta")) == 3
    assert kinds.index("message.delta") < kinds.index("message.completed") < kinds.index(
        "tool.call")  # fmt: skip

    # Read, Edit, Bash: each call one result, after it, ids unique
    calls, results = of(emits, "tool.call"), of(emits, "tool.result")
    assert [c["name"] for c in calls] == ["Read", "Edit", "Bash"]
    assert [c["call_id"] for c in calls] == [r["call_id"] for r in results]
    assert len({c["call_id"] for c in calls}) == 3
    for call in calls:
        at = next(i for i, e in enumerate(emits) if e.type == "tool.call" and e.data is call)
        assert any(e.type == "tool.result" and e.data["call_id"] == call["call_id"]
                   for e in emits[at + 1:])  # fmt: skip
    read, _edit, bash = results
    assert "return a - b" in read["output"] and "exit_code" not in read
    assert calls[2]["arguments"]["command"] == "python -m pytest -q"
    assert "1 passed" in bash["output"]
    assert bash["exit_code"] == 0 and bash["is_error"] is False

    # the edit: calc.py, workspace-relative, a unified diff, before the test run
    [changed] = of(emits, "file.changed")
    assert changed["path"] == "calc.py" and changed["change"] == "modified"
    assert "-    return a - b\n+    return a + b" in changed["diff"]
    assert changed["diff"].startswith("--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n")
    assert (changed["additions"], changed["deletions"]) == (1, 1)
    assert converter.changed_files == ["calc.py"]
    assert kinds.index("file.changed") < emits.index(
        next(e for e in emits if e.type == "tool.result" and e.data is bash))  # fmt: skip

    # usage: one step per API reply; the totals are the result line's, and so is the cost
    usage = of(emits, "usage")
    result = result_of(name)
    assert sum(u["prompt_tokens"] for u in usage) == result["usage"]["input_tokens"] == 5400
    assert sum(u["completion_tokens"] for u in usage) == result["usage"]["output_tokens"] == 77
    assert sum(u.get("cost_usd", 0) for u in usage) == result["total_cost_usd"]
    assert [u["step"] for u in usage][:4] == [1, 2, 3, 4] and usage[-1]["step"] == 4
    assert [u["prompt_tokens"] for u in usage[:4]] == [1200, 1300, 1400, 1500]
    if name == "transcript-fix-partial.jsonl":  # message_delta carries the real output tokens
        assert [u["completion_tokens"] for u in usage[:4]] == [20, 30, 15, 12]

    assert converter.phase == "answering" and converter.failed is None
    assert not of(emits, "error")
    [init] = [x for x in of(emits, "log") if x.get("kind") == "init"]
    assert "Claude Code 2.1.332" in init["message"] and "bypassPermissions" in init["message"]


@pytest.mark.parametrize(
    ("name", "status", "text", "retries"),
    [
        ("transcript-error.jsonl", 500, "API Error: 500", 10),
        ("transcript-auth.jsonl", 401, "Failed to authenticate", 10),
        ("transcript-streamerr.jsonl", None, "Server error mid-response", 0),
    ],
)
@pytest.mark.parametrize("exit_code", [0, 1])
def test_error_run(name: str, status: int | None, text: str, retries: int, exit_code: int) -> None:
    """The synthetic error reply fails the run (the result line repeats it: one error)."""
    converter, emits = convert(name, exit_code)
    check_shapes(emits)
    [error] = of(emits, "error")
    assert error["code"] == "provider_error" and text in error["message"]
    assert error["details"].get("status") == status
    assert converter.failed == {"code": "provider_error", "message": error["message"]}
    assert result_of(name)["is_error"] is True
    logs = [x for x in of(emits, "log") if x.get("kind") == "retry"]
    assert len(logs) == retries and all(x["level"] == "warning" for x in logs)
    if retries:
        assert logs[0]["message"].startswith("The model call was retried (attempt 1 of 10")
        assert f"(HTTP {status})" in logs[0]["message"]
        assert not of(emits, "message.completed") and not of(emits, "tool.call")


def test_mid_stream_error_keeps_the_partial_text() -> None:
    """A reply cut mid-stream is shown, the CLI's "resume" nudge logged, four attempts."""
    _, emits = convert("transcript-streamerr.jsonl", 1)
    assert [m["text"] for m in of(emits, "message.completed")] == ["partial "] * 4
    nudges = [x for x in of(emits, "log") if x.get("kind") == "synthetic"]
    assert len(nudges) == 3 and "cut off mid-stream" in nudges[0]["message"]
    assert [e.type for e in emits][-2:] == ["error", "usage"]  # the result's cost comes last


def test_retry_then_success() -> None:
    converter, emits = convert("transcript-retry.jsonl")
    kinds = [e.type for e in emits if e.type != "log"]
    assert kinds == ["usage", "message.delta", "message.completed", "usage"]
    [retry] = [x for x in of(emits, "log") if x.get("kind") == "retry"]
    assert "(HTTP 500)" in retry["message"]
    assert converter.failed is None and converter.phase == "answering"


def test_tool_errors() -> None:
    """A failed Edit, an unknown tool, a Bash exit 3: errors the model sees, not the run's."""
    converter, emits = convert("transcript-toolerr.jsonl")
    check_shapes(emits)
    edit, unknown, bash = of(emits, "tool.result")
    assert edit["is_error"] and "String to replace not found" in edit["output"]
    assert unknown["name"] == "NoSuchTool" and unknown["is_error"]
    assert bash["is_error"] and bash["exit_code"] == 3
    assert not of(emits, "file.changed") and converter.changed_files == []
    assert converter.failed is None and converter.phase == "answering"


def test_write_creates_a_file() -> None:
    converter, emits = convert("transcript-write.jsonl")
    check_shapes(emits)
    [changed] = of(emits, "file.changed")
    assert changed == {"path": "notes.txt", "change": "created",
                       "diff": "--- /dev/null\n+++ b/notes.txt\n@@ -0,0 +1,1 @@\n+hello\n",
                       "additions": 1, "deletions": 0}  # fmt: skip
    # this version has no TodoWrite, Grep or Glob tool (Bash greps): errors the model sees
    names = {r["name"]: r["is_error"] for r in of(emits, "tool.result")}
    assert names == {"TodoWrite": True, "Write": False, "Grep": True, "Glob": True}
    assert converter.changed_files == ["notes.txt"]


def test_plan_mode_denials_are_warnings() -> None:
    """``--permission-mode plan``: the Edit and the Bash call are refused, nothing changes."""
    converter, emits = convert("transcript-plan.jsonl")
    check_shapes(emits)
    denied = [x for x in of(emits, "log") if x.get("kind") == "permission_denied"]
    assert [x["message"].split(" was denied")[0] for x in denied] == ["Edit", "Bash"]
    results = {r["name"]: r for r in of(emits, "tool.result")}
    assert results["Edit"]["is_error"] and "plan mode" in results["Edit"]["output"]
    assert results["Bash"]["is_error"] and results["Bash"]["exit_code"] is None
    assert not of(emits, "file.changed") and converter.failed is None
    assert "plan" in next(x for x in of(emits, "log") if x.get("kind") == "init")["message"]


def test_phases() -> None:
    converter = converter_for(ARCH)
    for name, arguments, phase in [
        ("TodoWrite", {"todos": []}, "planning"),
        ("Read", {"file_path": "/workspace/a.py"}, "reading"),
        ("Bash", {"command": "python -m pytest -q"}, "testing"),
        ("MultiEdit", {"file_path": "/workspace/a.py", "edits": []}, "editing"),
        ("Bash", {"command": "grep -rn add ."}, "reading"),
        ("ExitPlanMode", {"plan": "x"}, "planning"),
        ("NotebookEdit", {"notebook_path": "/workspace/n.ipynb"}, "editing"),
    ]:
        block = {"type": "tool_use", "id": f"toolu_{name}", "name": name, "input": arguments}
        line = {"type": "assistant", "uuid": "u", "message": {"id": f"m{name}",
                                                              "content": [block]}}  # fmt: skip
        converter.feed(json.dumps(line))
        assert converter.phase == phase, name


def test_thinking_and_unknown_lines() -> None:
    converter = converter_for(ARCH)
    line = {"type": "assistant", "uuid": "u1", "message": {"id": "m1", "usage": {
        "input_tokens": 3, "output_tokens": 1}, "content": [
        {"type": "thinking", "thinking": "Hmm.", "signature": "x"},
        {"type": "text", "text": "Hi."}]}}  # fmt: skip
    emits = converter.feed(json.dumps(line))
    assert [e.type for e in emits] == ["usage", "log", "message.delta", "message.completed"]
    assert emits[1].data["kind"] == "reasoning" and emits[1].data["message"] == "Hmm."
    assert emits[3].data["message_id"] == "u1-1"  # the second block of line u1
    for raw in ('{"type": "brand_new", "x": 1}', "not json", '{"type":"assistant","mess',
                '{"type": "system", "subtype": "compact_boundary"}'):  # fmt: skip
        assert converter.feed(raw) == [
            Emit("log", {"level": "info", "message": raw, "source": ARCH})
        ]
    assert converter.feed("") == [] and converter.failed is None


def test_killed_mid_run_closes_what_is_open() -> None:
    """Cut after the Bash call (killed): its result is closed as failed, the exit code fails
    the run; cut mid-text (partial messages): the streamed text gets its completed message."""
    fix = lines("transcript-fix.jsonl")
    cut = next(i for i, x in enumerate(fix) if '"name":"Bash"' in x) + 1
    converter = converter_for(ARCH)
    emits = [e for line in fix[:cut] for e in converter.feed(line)] + converter.finish(137)
    assert of(emits, "tool.result")[-1]["is_error"] is True
    assert converter.failed == {"code": "command_failed",
                                "message": "The claude-code CLI exited with code 137."}  # fmt: skip

    partial = lines("transcript-fix-partial.jsonl")
    cut = next(i for i, x in enumerate(partial) if '"text":"Fixed `add` in calc.py "' in x) + 1
    converter = converter_for(ARCH)
    emits = [e for line in partial[:cut] for e in converter.feed(line)] + converter.finish(143)
    assert of(emits, "message.completed")[-1]["text"] == "Fixed `add` in calc.py "


def test_a_recovered_error_does_not_fail_the_run() -> None:
    """An error reply, then a result with is_error false (e.g. a fallback model answered)."""
    converter = converter_for(ARCH)
    error = json.loads(next(x for x in lines("transcript-auth.jsonl") if "is_api_error" in x))
    converter.feed(json.dumps(error))
    assert converter.failed is not None
    converter.feed(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                               "usage": {}, "total_cost_usd": 0}))  # fmt: skip
    assert converter.failed is None and converter.finish(0) == []


def test_result_error_without_an_error_line() -> None:
    converter = converter_for(ARCH)
    emits = converter.feed(json.dumps({"type": "result", "subtype": "error_max_turns",
                                       "is_error": True, "num_turns": 3,
                                       "errors": ["Reached maximum number of turns (3)"]}))  # fmt: skip
    assert emits == [Emit("error", {"code": "agent_error",
                                    "message": "Reached maximum number of turns (3)",
                                    "details": {"subtype": "error_max_turns"}})]  # fmt: skip
    assert converter.failed == {"code": "agent_error",
                                "message": "Reached maximum number of turns (3)"}  # fmt: skip


def test_ids_take_the_prefix_and_never_repeat() -> None:
    _, emits = convert("transcript-fix.jsonl", id_prefix="task42-")
    ids = [c["call_id"] for c in of(emits, "tool.call")]
    assert ids == ["task42-toolu_0", "task42-toolu_2_0", "task42-toolu_3_0"]
    assert all(m["message_id"].startswith("task42-") for m in of(emits, "message.completed"))
    converter = converter_for(ARCH)  # the same tool_use id twice (a replayed scripted reply)
    line = lines("transcript-fix.jsonl")[2]
    first = converter.feed(line)
    second = converter.feed(line.replace('"uuid":"', '"uuid":"x'))
    assert first[-1].data["call_id"] != second[-1].data["call_id"]


@pytest.mark.parametrize("name", RUNS)
def test_deterministic_and_schema_valid(name: str) -> None:
    first, a = convert(name, 1)
    second, b = convert(name, 1)
    assert a == b and a
    assert (first.phase, first.failed, first.changed_files) == (
        second.phase, second.failed, second.changed_files)  # fmt: skip
    check_shapes(a)
    assert first.phase in (None, *PHASES)
    assert all("sk-ant" not in json.dumps(e.data) for e in a)  # the key is never printed
