"""The seeded `pytest` agent installs a project's test requirements inside the sandbox (from
wheels uploaded to the workspace, with no network) and reports JUnit counts."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from sandboxes import paths
from sessions.demo import seed_demo_agents
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create
from tests.helpers import stdout_of, wait_terminal

pytestmark = [pytest.mark.sandbox]


def _wheel(name: str, version: str, module_source: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel (PEP 427) built in memory: ``name`` with one module."""
    files = {
        f"{name}/__init__.py": module_source.encode(),
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


def _write(root: Path, path: str, data: bytes) -> None:
    with paths.open_write(root, path) as out:
        out.write(data)


def _setup(owner: Any, *, with_wheel: bool) -> Any:
    agents = {a.slug: a for a in seed_demo_agents(owner=owner)}
    session = session_create(owner=owner, agent=agents["pytest"])
    root = Path(session.workspace_path)
    _write(root, "proj/pyproject.toml", b'[project]\nname = "proj"\nversion = "0"\n')
    _write(root, "proj/requirements-test.txt", b"agentrt_tinydep==1.0\n")
    _write(
        root,
        "proj/tests/test_dep.py",
        b"import agentrt_tinydep\n\n\ndef test_dep():\n    assert agentrt_tinydep.VALUE == 42\n\n\n"
        b"def test_plain():\n    assert 1 + 1 == 2\n",
    )
    if with_wheel:
        name, data = _wheel("agentrt_tinydep", "1.0", "VALUE = 42\n")
        _write(root, f".agent/wheels/{name}", data)
    task, _ = task_create(session=session, user=owner, task_type="run", input={"cwd": "proj"})
    return task


@pytest.mark.parametrize("with_wheel", [True, False])
async def test_test_requirements_come_from_uploaded_wheels_without_network(
    executor: Any, owner: Any, with_wheel: bool
) -> None:
    task = await sync_to_async(_setup)(owner, with_wheel=with_wheel)
    executor.kick()
    task = await wait_terminal(task, timeout=120)
    out = await sync_to_async(stdout_of)(task)
    tests = task.result["tests"]
    if with_wheel:
        assert "installing test requirements from /workspace/.agent/wheels" in out
        assert task.status == "succeeded", out
        assert (tests["passed"], tests["failed"], tests["errors"]) == (2, 0, 0)
    else:
        # No wheels and no network: the run goes ahead and the missing dependency shows up as
        # a collection error in the counts, not as a hang or a crash.
        assert task.status == "failed"
        assert tests["passed"] == 0
        assert tests["errors"] + tests["failed"] >= 1
