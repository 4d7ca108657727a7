"""JUnit XML (pytest ``--junitxml``) → a compact summary for ``Task.result``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from runtime_project.exceptions import ApplicationError
from sandboxes import paths

_MAX_REPORT_BYTES = 32 * 1024 * 1024
_MAX_LISTED = 50


def junit_summary(workspace: Path, relpath: str) -> dict[str, Any] | None:
    """Counts from a JUnit XML report in the workspace, or ``None`` if it is missing/unreadable.

    Returns ``{"total", "passed", "failed", "errors", "skipped", "duration_s", "failures":
    [{"name", "message"}…]}`` (at most 50 failures listed). The file is untrusted (written by
    sandboxed code), so it is read through the confined path API and parsed with defusedxml.
    """
    try:
        with paths.open_read(workspace, relpath) as fh:
            raw = fh.read(_MAX_REPORT_BYTES + 1)
    except ApplicationError:
        return None
    if len(raw) > _MAX_REPORT_BYTES:
        return None
    try:
        root = ElementTree.fromstring(raw)
    except (ElementTree.ParseError, DefusedXmlException):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = failed = errors = skipped = 0
    duration = 0.0
    failures: list[dict[str, str]] = []
    for suite in suites:
        for case in suite.iter("testcase"):
            total += 1
            name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            if case.find("failure") is not None:
                failed += 1
                node = case.find("failure")
            elif case.find("error") is not None:
                errors += 1
                node = case.find("error")
            elif case.find("skipped") is not None:
                skipped += 1
                continue
            else:
                continue
            if len(failures) < _MAX_LISTED and node is not None:
                failures.append({"name": name, "message": (node.get("message") or "")[:500]})
        try:
            duration += float(suite.get("time", 0) or 0)
        except ValueError:
            pass
    return {
        "total": total,
        "passed": total - failed - errors - skipped,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
        "duration_s": round(duration, 3),
        "failures": failures,
    }
