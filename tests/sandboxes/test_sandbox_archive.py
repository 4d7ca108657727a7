"""sandboxes.paths.extract_archive: tar/zip uploads cannot escape or explode."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from runtime_project.exceptions import PayloadTooLarge
from sandboxes import paths
from sandboxes.paths import WorkspaceFileNotFound, WorkspacePathError

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_files": 100}


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    buf.seek(0)
    return buf


def file_member(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def dir_member(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def link_member(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def make_zip(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    buf.seek(0)
    return buf


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_extracts(workspace: Path, mode: str) -> None:
    archive = make_tar(
        [
            dir_member("."),
            file_member("./src/app.py", b"print('hi')\n"),
            file_member("run.sh", b"#!/bin/sh\n", mode=0o4755),
            link_member("src/alias.py", "app.py"),
            link_member("copy.py", "src/app.py", hard=True),
        ],
        mode=mode,
    )
    out = paths.extract_archive(workspace, "up", archive, **LIMITS)
    assert out == ["up/src/app.py", "up/run.sh", "up/src/alias.py", "up/copy.py"]
    assert (workspace / "up/src/app.py").read_bytes() == b"print('hi')\n"
    assert (workspace / "up/src/alias.py").is_symlink()
    assert (workspace / "up/copy.py").read_bytes() == b"print('hi')\n"
    run_mode = (workspace / "up/run.sh").stat().st_mode
    assert run_mode & 0o111 and not run_mode & stat.S_ISUID  # setuid bit dropped


def test_zip_extracts(workspace: Path) -> None:
    archive = make_zip({"a/": b"", "a/b.txt": b"bee", "c.txt": b"sea"}, {"a/link": "b.txt"})
    out = paths.extract_archive(workspace, "", archive, **LIMITS)
    assert sorted(out) == ["a", "a/b.txt", "a/link", "c.txt"]
    assert (workspace / "a/b.txt").read_bytes() == b"bee"
    assert (workspace / "a/link").readlink() == Path("b.txt")


@pytest.mark.parametrize(
    "member",
    [
        file_member("../evil.txt", b"x"),
        file_member("a/../../evil.txt", b"x"),
        file_member("/tmp/evil-abs.txt", b"x"),
        link_member("etc", "/etc"),
        link_member("up", "../../.."),
        link_member("a/b", "../../x"),
        link_member("hard", "/etc/passwd", hard=True),
        link_member("hard", "../outside/secret.txt", hard=True),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "abs-symlink", "rel-symlink-out",
         "nested-symlink-out", "hardlink-abs", "hardlink-out"],
)  # fmt: skip
def test_tar_bad_members_are_refused_before_writing(
    workspace: Path, outside: Path, member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    archive = make_tar([file_member("good.txt", b"fine"), member])
    with pytest.raises(WorkspacePathError) as info:
        paths.extract_archive(workspace, "", archive, **LIMITS)
    assert "member" in info.value.details
    assert tree(workspace) == []  # validation happens before anything is written
    assert not Path("/tmp/evil-abs.txt").exists()
    assert not (workspace.parent / "evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_special_files_refused(workspace: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("dev")
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    with pytest.raises(WorkspacePathError):
        paths.extract_archive(workspace, "", make_tar([(info, None)]), **LIMITS)
    assert tree(workspace) == []


def test_member_below_symlink_member_refused(workspace: Path) -> None:
    archive = make_tar([link_member("d", "sub"), file_member("d/x", b"x")])
    with pytest.raises(WorkspacePathError):
        paths.extract_archive(workspace, "", archive, **LIMITS)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt", "a/../../evil.txt"])
def test_zip_traversal_refused(workspace: Path, name: str) -> None:
    with pytest.raises(WorkspacePathError):
        paths.extract_archive(workspace, "", make_zip({"ok.txt": b"1", name: b"x"}), **LIMITS)
    assert tree(workspace) == []
    assert not (workspace.parent / "evil.txt").exists()


def test_zip_symlink_out_refused(workspace: Path) -> None:
    with pytest.raises(WorkspacePathError):
        paths.extract_archive(workspace, "", make_zip({}, {"l": "/etc/passwd"}), **LIMITS)
    with pytest.raises(WorkspacePathError):
        paths.extract_archive(workspace, "", make_zip({}, {"l": "../../x"}), **LIMITS)
    assert tree(workspace) == []


def test_zip_bomb_refused(workspace: Path) -> None:
    bomb = make_zip({"zeros.bin": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb.getvalue()) < 100_000  # it really is a bomb
    with pytest.raises(PayloadTooLarge) as info:
        paths.extract_archive(workspace, "", bomb, max_bytes=1024 * 1024, max_files=10)
    assert info.value.details == {"limit_bytes": 1024 * 1024}
    assert info.value.status_code == 413
    assert tree(workspace) == []


def test_tar_gz_bomb_refused(workspace: Path) -> None:
    bomb = make_tar([file_member("zeros.bin", b"\0" * (20 * 1024 * 1024))], mode="w:gz")
    with pytest.raises(PayloadTooLarge):
        paths.extract_archive(workspace, "", bomb, max_bytes=1024 * 1024, max_files=10)
    assert tree(workspace) == []


def test_too_many_files(workspace: Path) -> None:
    archive = make_zip({f"f{i}": b"" for i in range(11)})
    with pytest.raises(PayloadTooLarge) as info:
        paths.extract_archive(workspace, "", archive, max_bytes=1000, max_files=10)
    assert info.value.details == {"limit_files": 10}
    assert paths.extract_archive(workspace, "", make_zip({"f": b""}), max_bytes=1, max_files=1)


def test_planted_symlink_destination_not_followed(workspace: Path, outside: Path) -> None:
    (workspace / "dest").symlink_to(outside)
    with pytest.raises(WorkspaceFileNotFound):
        paths.extract_archive(workspace, "dest", make_zip({"x.txt": b"x"}), **LIMITS)
    (workspace / "d").mkdir()
    (workspace / "d" / "x.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(WorkspacePathError):
        paths.extract_archive(workspace, "d", make_zip({"x.txt": b"x"}), **LIMITS)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "host secret\n"


def test_not_an_archive(workspace: Path) -> None:
    with pytest.raises(WorkspacePathError) as info:
        paths.extract_archive(workspace, "", io.BytesIO(b"just text"), **LIMITS)
    assert info.value.code == "invalid_archive"


def test_non_seekable_stream(workspace: Path) -> None:
    data = make_tar([file_member("a.txt", b"a")], mode="w:gz").getvalue()

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self._buf.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    assert paths.extract_archive(workspace, "", Pipe(), **LIMITS) == ["a.txt"]  # type: ignore[arg-type]
