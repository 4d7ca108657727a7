"""sandboxes.paths: workspace file operations that never leave the workspace."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sandboxes import paths
from sandboxes.paths import FileEntry, WorkspaceFileNotFound, WorkspacePathError


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("", ""),
        (".", ""),
        ("./a//b/", "a/b"),
        ("a/./b", "a/b"),
        ("dir\\file.txt", "dir\\file.txt"),  # backslash is an ordinary character
        ("..a/b..", "..a/b.."),
    ],
)
def test_normalize_accepts(raw: str, clean: str) -> None:
    assert paths.normalize(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "a/..",
        "..",
        "a\x00b",
        "a/" * 600,
        "x" * 256,
    ],
)
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(WorkspacePathError) as info:
        paths.normalize(raw)
    assert info.value.code == "invalid_path"
    assert info.value.status_code == 400


def test_component_of_255_bytes_is_fine() -> None:
    assert paths.normalize("x" * 255) == "x" * 255


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b"])
def test_every_operation_rejects_traversal(workspace: Path, bad: str) -> None:
    for call in (
        lambda: paths.open_read(workspace, bad),
        lambda: paths.open_write(workspace, bad),
        lambda: paths.stat(workspace, bad),
        lambda: paths.list_dir(workspace, bad),
        lambda: paths.remove(workspace, bad),
    ):
        with pytest.raises(WorkspacePathError):
            call()


def test_write_then_read_roundtrip_creates_parents(workspace: Path) -> None:
    with paths.open_write(workspace, "a/b/c.txt") as fh:
        fh.write(b"hello")
    assert (workspace / "a/b/c.txt").read_bytes() == b"hello"
    with paths.open_read(workspace, "./a/b/c.txt") as fh:
        assert fh.read() == b"hello"
    with paths.open_write(workspace, "a/b/c.txt") as fh:  # truncates
        fh.write(b"x")
    assert (workspace / "a/b/c.txt").read_bytes() == b"x"


def test_write_without_make_parents(workspace: Path) -> None:
    with pytest.raises(WorkspaceFileNotFound):
        paths.open_write(workspace, "missing/f.txt", make_parents=False)
    assert not (workspace / "missing").exists()


def test_read_errors(workspace: Path) -> None:
    (workspace / "d").mkdir()
    with pytest.raises(WorkspaceFileNotFound) as info:
        paths.open_read(workspace, "nope.txt")
    assert info.value.code == "file_not_found"
    assert info.value.status_code == 404
    with pytest.raises(WorkspacePathError, match="directory"):
        paths.open_read(workspace, "d")
    with pytest.raises(WorkspacePathError, match="directory"):
        paths.open_read(workspace, "")
    with pytest.raises(WorkspacePathError):
        paths.open_write(workspace, "")
    with pytest.raises(WorkspacePathError):
        paths.open_write(workspace, "d")


def test_fifo_does_not_block(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    started = time.monotonic()
    with pytest.raises(WorkspacePathError, match="regular file"):
        paths.open_read(workspace, "pipe")
    with pytest.raises(WorkspacePathError):
        paths.open_write(workspace, "pipe")
    assert time.monotonic() - started < 1


def test_symlinked_directory_is_never_followed(workspace: Path, outside: Path) -> None:
    (workspace / "etc").symlink_to("/etc")
    (workspace / "out").symlink_to(outside)
    for link in ("etc", "out"):
        with pytest.raises(WorkspaceFileNotFound):
            paths.open_read(workspace, f"{link}/passwd")
        with pytest.raises(WorkspaceFileNotFound):
            paths.open_read(workspace, f"{link}/secret.txt")
        with pytest.raises(WorkspaceFileNotFound):
            paths.open_write(workspace, f"{link}/planted.txt")
        with pytest.raises(WorkspaceFileNotFound):
            paths.open_write(workspace, f"{link}/deeper/planted.txt")
        with pytest.raises(WorkspaceFileNotFound):
            paths.list_dir(workspace, link)
        with pytest.raises(WorkspaceFileNotFound):
            paths.list_dir(workspace, f"{link}/")
        with pytest.raises(WorkspaceFileNotFound):
            paths.stat(workspace, f"{link}/secret.txt")
        with pytest.raises(WorkspaceFileNotFound):
            paths.remove(workspace, f"{link}/secret.txt")
    assert not (outside / "planted.txt").exists()
    assert not (outside / "deeper").exists()
    assert (outside / "secret.txt").read_text() == "host secret\n"
    assert Path("/etc/passwd").exists()
    assert paths.stat(workspace, "out").type == "symlink"
    # Removing the link removes the link only.
    paths.remove(workspace, "out")
    assert not (workspace / "out").is_symlink()
    assert (outside / "secret.txt").exists()


def test_symlinked_file_is_not_read_or_written(workspace: Path, outside: Path) -> None:
    (workspace / "pw").symlink_to(outside / "secret.txt")
    (workspace / "dangling").symlink_to(outside / "new.txt")
    with pytest.raises(WorkspaceFileNotFound):
        paths.open_read(workspace, "pw")
    with pytest.raises(WorkspacePathError):
        paths.open_write(workspace, "pw")
    with pytest.raises(WorkspacePathError):
        paths.open_write(workspace, "dangling")
    assert (outside / "secret.txt").read_text() == "host secret\n"
    assert not (outside / "new.txt").exists()


def test_list_dir_shows_symlinks_without_following(workspace: Path, outside: Path) -> None:
    (workspace / "sub").mkdir()
    (workspace / "sub" / "f.txt").write_bytes(b"12345")
    (workspace / "top.txt").write_bytes(b"1")
    (workspace / "link").symlink_to(outside)
    flat = paths.list_dir(workspace)
    assert [(e.path, e.type) for e in flat] == [
        ("link", "symlink"),
        ("sub", "directory"),
        ("top.txt", "file"),
    ]
    deep = paths.list_dir(workspace, recursive=True)
    assert [e.path for e in deep] == ["link", "sub", "sub/f.txt", "top.txt"]
    assert all("secret" not in e.path for e in deep)
    sub = {e.path: e for e in paths.list_dir(workspace, "sub")}
    assert sub["sub/f.txt"].size == 5
    assert isinstance(sub["sub/f.txt"], FileEntry)
    assert len(paths.list_dir(workspace, recursive=True, limit=2)) == 2
    with pytest.raises(WorkspacePathError):
        paths.list_dir(workspace, "top.txt")


def test_stat(workspace: Path) -> None:
    (workspace / "f").write_bytes(b"abc")
    entry = paths.stat(workspace, "f")
    assert (entry.path, entry.type, entry.size) == ("f", "file", 3)
    assert entry.modified == pytest.approx((workspace / "f").stat().st_mtime)
    assert paths.stat(workspace, "").type == "directory"
    with pytest.raises(WorkspaceFileNotFound):
        paths.stat(workspace, "missing")


def test_remove(workspace: Path, outside: Path) -> None:
    with pytest.raises(WorkspacePathError):
        paths.remove(workspace, "")
    with pytest.raises(WorkspacePathError):
        paths.remove(workspace, ".")
    (workspace / "empty").mkdir()
    paths.remove(workspace, "empty")
    assert not (workspace / "empty").exists()
    (workspace / "full" / "x").mkdir(parents=True)
    (workspace / "full" / "link").symlink_to(outside)
    with pytest.raises(WorkspacePathError) as info:
        paths.remove(workspace, "full")
    assert info.value.code == "directory_not_empty"
    paths.remove(workspace, "full", recursive=True)
    assert not (workspace / "full").exists()
    assert (outside / "secret.txt").exists()  # rmtree removed the link, not its target
    (workspace / "f").write_bytes(b"")
    paths.remove(workspace, "f")
    assert not (workspace / "f").exists()
    with pytest.raises(WorkspaceFileNotFound):
        paths.remove(workspace, "f")


def test_workspace_size_does_not_follow_links(workspace: Path, outside: Path) -> None:
    (outside / "big").write_bytes(b"x" * 100_000)
    (workspace / "a").write_bytes(b"x" * 10)
    (workspace / "d").mkdir()
    (workspace / "d" / "b").write_bytes(b"x" * 20)
    os.link(workspace / "a", workspace / "d" / "hard")
    (workspace / "link").symlink_to(outside)
    link_len = len(os.fsencode(outside))
    assert paths.workspace_size(workspace) == 10 + 20 + link_len


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_new_entries_adopt_parent_owner(workspace: Path, outside: Path) -> None:
    os.chown(workspace, 65534, 65534)
    with paths.open_write(workspace, "new/dir/f.txt") as fh:
        fh.write(b"x")
    for rel in ("new", "new/dir", "new/dir/f.txt"):
        st = (workspace / rel).stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), rel
    paths.make_dirs(workspace, "made")
    assert (workspace / "made").stat().st_uid == 65534
    # A root-owned directory keeps its files root-owned; nothing outside is touched.
    os.chown(workspace / "new", 0, 0)
    with paths.open_write(workspace, "new/g.txt") as fh:
        fh.write(b"y")
    assert (workspace / "new/g.txt").stat().st_uid == 0
    assert outside.stat().st_uid == 0
