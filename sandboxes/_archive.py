"""Safe extraction of uploaded tar/zip archives into a workspace (see ``paths.extract_archive``),
and packing a workspace into a ``.tar.gz`` (:func:`pack`, for snapshots).

Two phases: *plan* reads every member header, validates names, link targets, types and the
declared sizes/count against the limits, and writes nothing; *write* then creates the members
through descriptor walks (``paths._dir_fd``/``paths.open_write``) that never follow a symlink,
counting the bytes actually written so a lying header cannot exceed ``max_bytes`` either.

We never call ``TarFile.extractall``/``ZipFile.extractall``: they resolve paths on the host by
name and would follow a symlink that sandboxed code swapped in while we extract.
"""

from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal

from runtime_project.exceptions import PayloadTooLarge
from sandboxes import paths

_CHUNK = 1 << 16  # bytes copied per read
_MAX_LINK_TARGET = 4096  # bytes; a zip symlink's target is its content
# What a truncated or malformed archive raises while we read it (NotImplementedError: unknown
# zip compression; RuntimeError: encrypted zip member).
_CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
)


@dataclass
class _Member:
    rel: str  # path relative to the workspace root
    kind: Literal["file", "dir", "symlink"]
    size: int  # declared uncompressed bytes (files only)
    executable: bool
    target: str = ""  # symlink target
    opener: Callable[[], IO[bytes] | None] | None = None


def _bad(message: str, member: str) -> paths.WorkspacePathError:
    return paths.WorkspacePathError(message, details={"member": member[:300]})


def _invalid_archive(message: str) -> paths.WorkspacePathError:
    return paths.WorkspacePathError(message, code="invalid_archive")


class _Planner:
    """Accumulates validated members and enforces the limits on declared sizes and count."""

    def __init__(self, dest: str, *, max_bytes: int, max_files: int) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.total = 0
        self.members: list[_Member] = []
        self.links: set[str] = set()  # member paths (relative to dest) that are symlinks

    def name(self, raw: str) -> str | None:
        """Validate a member name; return it relative to ``dest`` (``None`` for the dest root)."""
        if raw.startswith("/"):
            raise _bad("Archive member has an absolute path.", raw)
        try:
            rel = paths.normalize(raw)
            if self.dest:
                paths.normalize(f"{self.dest}/{rel}")  # the joined path must be acceptable too
        except paths.WorkspacePathError as exc:
            raise _bad(f"Archive member rejected: {exc.message}", raw) from None
        if not rel:
            return None
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self.links:
                raise _bad("Archive member is below a symlink member.", raw)
        return rel

    def add(self, member: _Member, rel: str) -> None:
        if len(self.members) >= self.max_files:
            raise PayloadTooLarge(
                "The archive has too many members.", details={"limit_files": self.max_files}
            )
        self.count_bytes(member.size)
        member.rel = f"{self.dest}/{rel}" if self.dest else rel
        self.members.append(member)
        if member.kind == "symlink":
            self.links.add(rel)
        else:
            self.links.discard(rel)

    def count_bytes(self, size: int) -> None:
        self.total += size
        if self.total > self.max_bytes:
            raise PayloadTooLarge(
                "The archive is too large when extracted.",
                details={"limit_bytes": self.max_bytes},
            )

    def check_link(self, rel: str, target: str, raw: str) -> None:
        """A symlink must stay inside the destination, judged lexically from its directory."""
        if not target or "\x00" in target or target.startswith("/"):
            raise _bad("Archive symlink points outside the destination.", raw)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
            raise _bad("Archive symlink points outside the destination.", raw)


def _plan_tar(tf: tarfile.TarFile, planner: _Planner, host_dest: str) -> None:
    sizes: dict[str, int] = {}
    while True:
        info = tf.next()
        if info is None:
            break
        raw = info.name
        try:
            # The stdlib "data" filter (PEP 706) as a second opinion on every member.
            filtered = tarfile.data_filter(info, host_dest)
        except tarfile.FilterError as exc:
            raise _bad(f"Archive member rejected: {exc.__class__.__name__}.", raw) from None
        rel = planner.name(raw)
        if rel is None:
            if not info.isdir():
                raise _bad("Archive member has an empty name.", raw)
            continue
        mode = filtered.mode if filtered is not None and filtered.mode is not None else 0o644
        if info.isdir():
            planner.add(_Member(rel, "dir", 0, False), rel)
        elif info.isreg():
            sizes[rel] = info.size
            planner.add(
                _Member(rel, "file", info.size, bool(mode & 0o111), opener=_tar_opener(tf, info)),
                rel,
            )
        elif info.issym():
            planner.check_link(rel, info.linkname, raw)
            planner.add(_Member(rel, "symlink", 0, False, target=info.linkname), rel)
        elif info.islnk():
            # A hard link becomes a copy of its (earlier, regular) target member.
            try:
                target_rel = paths.normalize(info.linkname)
            except paths.WorkspacePathError:
                raise _bad("Archive hard link points outside the destination.", raw) from None
            if target_rel not in sizes:
                raise _bad("Archive hard link target is not a file in the archive.", raw)
            size = sizes[target_rel]
            sizes[rel] = size
            planner.add(
                _Member(rel, "file", size, bool(mode & 0o111), opener=_tar_opener(tf, info)), rel
            )
        else:
            raise _bad("Archive member is a device, FIFO or other special file.", raw)


def _tar_opener(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], IO[bytes] | None]:
    return lambda: tf.extractfile(info)


def _plan_zip(zf: zipfile.ZipFile, planner: _Planner) -> None:
    for info in zf.infolist():
        raw = info.filename
        rel = planner.name(raw)
        unix_mode = (info.external_attr >> 16) & 0xFFFF
        file_type = unix_mode & 0o170000
        if rel is None:
            if not info.is_dir():
                raise _bad("Archive member has an empty name.", raw)
            continue
        if info.is_dir():
            planner.add(_Member(rel, "dir", 0, False), rel)
        elif file_type == 0o120000:  # S_IFLNK: the target is the member's content
            if info.file_size > _MAX_LINK_TARGET:
                raise _bad("Archive symlink target is too long.", raw)
            target = zf.read(info).decode("utf-8", "surrogateescape")
            planner.check_link(rel, target, raw)
            planner.add(_Member(rel, "symlink", 0, False, target=target), rel)
        elif file_type in (0, 0o100000):
            planner.add(
                _Member(
                    rel,
                    "file",
                    info.file_size,
                    bool(unix_mode & 0o111),
                    opener=_zip_opener(zf, info),
                ),
                rel,
            )
        else:
            raise _bad("Archive member is a device, FIFO or other special file.", raw)


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes] | None]:
    return lambda: zf.open(info)


def _write(root: Path, members: list[_Member], max_bytes: int) -> list[str]:
    written = 0
    out: list[str] = []
    for member in members:
        if member.kind == "dir":
            paths.make_dirs(root, member.rel)
        elif member.kind == "symlink":
            _write_symlink(root, member)
        else:
            assert member.opener is not None
            src = member.opener()
            if src is None:
                raise _bad("Archive member has no data.", member.rel)
            with src, paths.open_write(root, member.rel) as dst:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:  # the headers lied about the sizes
                        raise PayloadTooLarge(
                            "The archive is too large when extracted.",
                            details={"limit_bytes": max_bytes},
                        )
                    dst.write(chunk)
                os.fchmod(dst.fileno(), 0o755 if member.executable else 0o644)
        out.append(member.rel)
    return out


def _write_symlink(root: Path, member: _Member) -> None:
    parts = member.rel.split("/")
    with paths._dir_fd(root, parts[:-1], create=True) as parent:
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if (st.st_mode & 0o170000) == 0o040000:
                raise _bad("Archive symlink would replace a directory.", member.rel)
            os.unlink(parts[-1], dir_fd=parent)  # tar semantics: a later member replaces
        os.symlink(member.target, parts[-1], dir_fd=parent)
        paths.adopt_owner(parent, name=parts[-1])


def _seekable(archive: BinaryIO) -> tuple[BinaryIO, bool]:
    """Return a seekable file with the archive (spooled when needed) and whether we own it."""
    try:
        if archive.seekable():
            archive.seek(0)
            return archive, False
    except (AttributeError, OSError):
        pass
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
    shutil.copyfileobj(archive, spool, _CHUNK)
    spool.seek(0)
    return spool, True  # type: ignore[return-value]


def extract(
    root: Path, path: str, archive: BinaryIO, *, max_bytes: int, max_files: int
) -> list[str]:
    """Implementation of :func:`sandboxes.paths.extract_archive` (same contract)."""
    dest = paths.normalize(path)
    planner = _Planner(dest, max_bytes=max_bytes, max_files=max_files)
    host_dest = os.path.join(os.fspath(root), dest) if dest else os.fspath(root)
    src, owned = _seekable(archive)
    try:
        if zipfile.is_zipfile(src):
            src.seek(0)
            with zipfile.ZipFile(src) as zf:
                _plan_zip(zf, planner)
                paths.make_dirs(root, dest)
                return _write(root, planner.members, max_bytes)
        src.seek(0)
        try:
            tf = tarfile.open(fileobj=src, mode="r:*")  # noqa: SIM115 - closed by `with tf`
        except tarfile.ReadError:
            raise _invalid_archive("Unsupported archive: expected .tar, .tar.gz or .zip.") from None
        with tf:
            _plan_tar(tf, planner, host_dest)
            paths.make_dirs(root, dest)
            return _write(root, planner.members, max_bytes)
    except (paths.WorkspacePathError, paths.WorkspaceFileNotFound, PayloadTooLarge):
        raise
    except _CORRUPT as exc:
        raise _invalid_archive(f"The archive is corrupt: {exc.__class__.__name__}.") from None
    finally:
        if owned:
            src.close()


def pack(root: Path, out: BinaryIO, *, max_bytes: int) -> int:
    """Write the tree below ``root`` to ``out`` as a ``.tar.gz``; returns the member count.

    Raises:
        PayloadTooLarge: the files add up to more than ``max_bytes`` (details ``limit_bytes``).

    Walks with :func:`sandboxes.paths.iter_tree` (descriptor-relative, ``O_NOFOLLOW``), so a
    symlink is stored as a link and never followed; files are opened with ``O_NOFOLLOW`` too.
    Sockets, FIFOs and devices are skipped: they are not workspace content.
    """
    count = total = 0
    with tarfile.open(fileobj=out, mode="w:gz") as tar, paths._dir_fd(root, []) as top:
        for parent_fd, entry, rel, st in paths.iter_tree(top):
            info = tarfile.TarInfo(rel)
            info.mtime = int(st.st_mtime)
            info.mode = st.st_mode & 0o7777
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(entry, dir_fd=parent_fd)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                try:
                    fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent_fd)
                except OSError:
                    continue  # removed or swapped for a link meanwhile
                with os.fdopen(fd, "rb") as fh:
                    info.size = os.fstat(fh.fileno()).st_size
                    total += info.size
                    if total > max_bytes:
                        raise PayloadTooLarge(
                            "The workspace is too large to archive.",
                            details={"limit_bytes": max_bytes},
                        )
                    tar.addfile(info, fh)
            else:
                continue
            count += 1
    return count
