"""Host-side workspace file operations that can never leave the workspace root.

Sandboxed code owns its workspace and may plant symlinks in it (``ln -s /etc x``), FIFOs, or
swap a directory for a symlink while the server is working on it (research note, gotcha 10).
Every function here therefore:

* validates the *string* first (:func:`normalize`): relative, no ``..``, no NUL, bounded length;
* walks the path one component at a time with ``openat(dir_fd, name, O_NOFOLLOW|O_DIRECTORY)``
  starting from a descriptor of the root, so a symlink anywhere in the path is never followed
  (it is reported as :class:`WorkspaceFileNotFound`, without saying that it is a link);
* opens the final component with ``O_NOFOLLOW`` (and ``O_NONBLOCK`` so a planted FIFO cannot
  block the server), then checks the opened file's type with ``fstat``.

The functions are blocking (plain file I/O); call them through ``asyncio.to_thread`` from async
code. Sizes are in bytes, times in seconds since the epoch.
"""

from __future__ import annotations

import errno
import os
import socket
import stat as stat_mod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from runtime_project.exceptions import InvalidInput, NotFound

MAX_PATH_CHARS = 1024
"""Longest accepted relative path, in characters."""
MAX_COMPONENT_BYTES = 255
"""Longest accepted path component, in bytes of its filesystem encoding (NAME_MAX)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_MODE = 0o755
_FILE_MODE = 0o644

EntryType = Literal["file", "directory", "symlink", "other"]


class WorkspacePathError(InvalidInput):
    """The path is not acceptable (absolute, ``..``, too long, wrong type for the operation)."""

    code = "invalid_path"


class WorkspaceFileNotFound(NotFound):
    """No such file (also raised when a path component is a symlink: we never follow those)."""

    code = "file_not_found"


@dataclass(frozen=True)
class FileEntry:
    """One workspace entry.

    Attributes:
        path: relative posix path from the workspace root (``""`` is the root itself).
        type: ``file``, ``directory``, ``symlink`` (never followed) or ``other`` (FIFO, socket…).
        size: ``st_size`` in bytes (for a symlink: the length of its target string).
        modified: modification time, seconds since the epoch.
    """

    path: str
    type: EntryType
    size: int
    modified: float


def normalize(path: str) -> str:
    """Return the clean relative posix form of ``path`` (``""`` for the workspace root).

    ``"./a//b/"`` → ``"a/b"``. Backslashes are ordinary characters.

    Raises:
        WorkspacePathError: absolute path, a ``..`` component, a NUL byte, more than
            :data:`MAX_PATH_CHARS` characters, or a component over :data:`MAX_COMPONENT_BYTES`.
    """
    if not isinstance(path, str):
        raise WorkspacePathError("The path must be a string.")
    if "\x00" in path:
        raise WorkspacePathError("The path must not contain NUL bytes.")
    if len(path) > MAX_PATH_CHARS:
        raise WorkspacePathError("The path is too long.", details={"limit_chars": MAX_PATH_CHARS})
    if path.startswith("/"):
        raise WorkspacePathError("The path must be relative to the workspace.")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise WorkspacePathError("The path must not contain '..'.")
        try:
            encoded = os.fsencode(part)
        except UnicodeEncodeError:
            raise WorkspacePathError("The path is not valid text.") from None
        if len(encoded) > MAX_COMPONENT_BYTES:
            raise WorkspacePathError(
                "A path component is too long.", details={"limit_bytes": MAX_COMPONENT_BYTES}
            )
        parts.append(part)
    return "/".join(parts)


def _split(path: str) -> list[str]:
    normalized = normalize(path)
    return normalized.split("/") if normalized else []


def _entry_type(mode: int) -> EntryType:
    if stat_mod.S_ISREG(mode):
        return "file"
    if stat_mod.S_ISDIR(mode):
        return "directory"
    if stat_mod.S_ISLNK(mode):
        return "symlink"
    return "other"


def _not_found(parts: list[str]) -> WorkspaceFileNotFound:
    return WorkspaceFileNotFound("No such file or directory.", details={"path": "/".join(parts)})


def _open_root(root: Path) -> int:
    # The root itself is a trusted host path chosen by the server; only what is below it is not.
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WorkspaceFileNotFound("The workspace does not exist.") from None


def adopt_owner(parent_fd: int, *, fd: int | None = None, name: str | None = None) -> None:
    """When running as root, give a new entry the owner and group of its parent directory.

    A workspace is owned by the sandbox uid (the ``local`` backend chowns it), so files the
    server writes into it stay writable by sandboxed code. Changes either the open ``fd`` or
    ``name`` below ``parent_fd`` without following a symlink. A no-op when not root.
    """
    if os.geteuid() != 0:
        return
    parent = os.fstat(parent_fd)
    if fd is not None:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (parent.st_uid, parent.st_gid):
            os.fchown(fd, parent.st_uid, parent.st_gid)
    elif name is not None:
        os.chown(name, parent.st_uid, parent.st_gid, dir_fd=parent_fd, follow_symlinks=False)


def _open_subdir(dir_fd: int, name: str, *, create: bool) -> int:
    """Open ``name`` below ``dir_fd`` as a directory without following a symlink.

    Raises OSError (ENOENT, ELOOP, ENOTDIR, …) for the caller to translate.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, _DIR_MODE, dir_fd=dir_fd)
    except FileExistsError:
        pass  # raced with another creator; the open below decides what it is
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    adopt_owner(dir_fd, fd=fd)
    return fd


@contextmanager
def _dir_fd(root: Path, parts: list[str], *, create: bool = False) -> Iterator[int]:
    """Yield a descriptor of the directory ``root/parts`` reached without following symlinks.

    Raises:
        WorkspaceFileNotFound: a component is missing, is a symlink, or is not a directory.
    """
    fd = _open_root(root)
    try:
        for index, name in enumerate(parts):
            try:
                next_fd = _open_subdir(fd, name, create=create)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EACCES):
                    raise _not_found(parts[: index + 1]) from None
                raise
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def _lstat_at(dir_fd: int, name: str, parts: list[str]) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise _not_found(parts) from None


def _entry(rel: str, st: os.stat_result) -> FileEntry:
    return FileEntry(path=rel, type=_entry_type(st.st_mode), size=st.st_size, modified=st.st_mtime)


def open_read(root: Path, path: str) -> BinaryIO:
    """Open the regular file ``root/path`` for reading (binary).

    Raises:
        WorkspacePathError: invalid path, a directory, or not a regular file (FIFO, socket).
        WorkspaceFileNotFound: missing, or a symlink anywhere in the path (final one included).
    """
    parts = _split(path)
    if not parts:
        raise WorkspacePathError("The path is a directory.")
    with _dir_fd(root, parts[:-1]) as parent:
        try:
            # O_NONBLOCK: opening a FIFO planted by the sandbox must not hang the server.
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent
            )
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EACCES):
                raise _not_found(parts) from None
            raise
    try:
        mode = os.fstat(fd).st_mode
        if stat_mod.S_ISDIR(mode):
            raise WorkspacePathError("The path is a directory.")
        if not stat_mod.S_ISREG(mode):
            raise WorkspacePathError("The path is not a regular file.")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_write(root: Path, path: str, *, make_parents: bool = True) -> BinaryIO:
    """Create or truncate the regular file ``root/path`` and open it for writing (binary).

    Missing parent directories are created (mode 0o755) one by one below their already opened
    parent when ``make_parents`` is true. A new file gets mode 0o644.

    Raises:
        WorkspacePathError: invalid or empty path, or the target is a directory / symlink /
            FIFO / other non-regular file (never written through).
        WorkspaceFileNotFound: a parent is missing (``make_parents=False``) or is a symlink.
    """
    parts = _split(path)
    if not parts:
        raise WorkspacePathError("A file path is required.")
    with _dir_fd(root, parts[:-1], create=make_parents) as parent:
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat_mod.S_ISREG(st.st_mode):
            kind = "a directory" if stat_mod.S_ISDIR(st.st_mode) else "not a regular file"
            raise WorkspacePathError(f"The path is {kind}.")
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            # No O_TRUNC yet: the entry may have been swapped since the lstat above; truncate
            # only after fstat proved that what we opened is a regular file.
            fd = os.open(name, flags, _FILE_MODE, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ETXTBSY):
                raise WorkspacePathError("The path is not a regular file.") from None
            if exc.errno in (errno.ENOENT, errno.EACCES):
                raise _not_found(parts) from None
            raise
        try:
            if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
                raise WorkspacePathError("The path is not a regular file.")
            adopt_owner(parent, fd=fd)
            os.ftruncate(fd, 0)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise


def make_dirs(root: Path, path: str) -> None:
    """Create the directory ``root/path`` and its parents (like ``mkdir -p``), never via links.

    Raises:
        WorkspaceFileNotFound: a component exists but is a symlink or not a directory.
    """
    with _dir_fd(root, _split(path), create=True):
        pass


def stat(root: Path, path: str) -> FileEntry:
    """Describe ``root/path`` without following a final symlink.

    Raises:
        WorkspaceFileNotFound: missing, or a symlink in a parent component.
    """
    parts = _split(path)
    if not parts:
        with _dir_fd(root, []) as fd:
            return _entry("", os.fstat(fd))
    with _dir_fd(root, parts[:-1]) as parent:
        return _entry("/".join(parts), _lstat_at(parent, parts[-1], parts))


MAX_DEPTH = 256
"""Deepest directory level the tree walks descend into (each level holds one descriptor)."""


def _children(fd: int) -> list[tuple[str, os.stat_result]]:
    out = []
    with os.scandir(fd) as it:
        for dirent in it:
            try:
                out.append((dirent.name, dirent.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed while listing
    return out


def iter_tree(
    dir_fd: int, prefix: str = "", *, depth: int = 0
) -> Iterator[tuple[int, str, str, os.stat_result]]:
    """Yield ``(parent_fd, name, rel_path, lstat)`` for everything below ``dir_fd``.

    Depth first, parents before children. A subdirectory is opened with
    ``openat(parent_fd, name, O_NOFOLLOW|O_DIRECTORY)``, so a directory swapped for a symlink
    (or a FIFO) meanwhile is skipped, never followed or blocked on. ``parent_fd`` is only valid
    until the generator resumes. Stops descending below :data:`MAX_DEPTH` levels.
    """
    for name, st in _children(dir_fd):
        rel = f"{prefix}/{name}" if prefix else name
        yield dir_fd, name, rel, st
        if stat_mod.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
            try:
                child = os.open(name, _DIR_FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue  # swapped for a symlink or removed meanwhile: skip, never follow
            try:
                yield from iter_tree(child, rel, depth=depth + 1)
            finally:
                os.close(child)


def list_dir(
    root: Path, path: str = "", *, recursive: bool = False, limit: int = 10000
) -> list[FileEntry]:
    """List the directory ``root/path``, sorted by path; symlinks are listed, never followed.

    Args:
        root: workspace root on the host.
        path: directory relative to the root (``""`` = the root).
        recursive: descend into subdirectories (opened with ``O_NOFOLLOW`` below their parent).
        limit: return at most this many entries (pass ``limit + 1`` to detect truncation).

    Raises:
        WorkspacePathError: ``path`` is not a directory.
        WorkspaceFileNotFound: ``path`` is missing or is (or passes through) a symlink.
    """
    parts = _split(path)
    if parts:
        entry = stat(root, path)
        if entry.type != "directory":
            if entry.type == "symlink":
                raise _not_found(parts)
            raise WorkspacePathError("The path is not a directory.")
    out: list[FileEntry] = []
    with _dir_fd(root, parts) as fd:
        if recursive:
            for _parent, _name, rel, st in iter_tree(fd, "/".join(parts)):
                if len(out) >= limit:
                    break
                out.append(_entry(rel, st))
        else:
            prefix = "/".join(parts)
            for name, st in _children(fd)[: max(limit, 0)]:
                out.append(_entry(f"{prefix}/{name}" if prefix else name, st))
    out.sort(key=lambda e: e.path)
    return out


def _rmtree_at(parent_fd: int, name: str, depth: int = 0) -> None:
    """Remove the directory ``name`` below ``parent_fd`` and its content, never via links.

    (``shutil.rmtree`` opens subdirectories without ``O_NOFOLLOW``: a directory swapped for a
    symlink to a FIFO between its lstat and open would block the server.)
    """
    if depth > MAX_DEPTH:
        raise WorkspacePathError("The directory tree is too deep to remove.")
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NONBLOCK, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # not (or no longer) a directory
            os.unlink(name, dir_fd=parent_fd)
            return
        raise
    try:
        for child, st in _children(fd):
            if stat_mod.S_ISDIR(st.st_mode):
                _rmtree_at(fd, child, depth + 1)
            else:
                try:
                    os.unlink(child, dir_fd=fd)
                except IsADirectoryError:  # swapped for a directory meanwhile
                    _rmtree_at(fd, child, depth + 1)
                except FileNotFoundError:
                    pass
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def remove(root: Path, path: str, *, recursive: bool = False) -> None:
    """Remove ``root/path``: a file, a symlink (the link itself), or a directory.

    An empty directory is removed without ``recursive``; a non-empty one needs
    ``recursive=True`` (removed through descriptors opened with ``O_NOFOLLOW``).

    Raises:
        WorkspacePathError: the root itself (``""``), or code ``directory_not_empty``.
        WorkspaceFileNotFound: missing, or a symlink in a parent component.
    """
    parts = _split(path)
    if not parts:
        raise WorkspacePathError("Refusing to remove the workspace root.")
    with _dir_fd(root, parts[:-1]) as parent:
        name = parts[-1]
        st = _lstat_at(parent, name, parts)
        try:
            if not stat_mod.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent)
            elif recursive:
                _rmtree_at(parent, name)
            else:
                os.rmdir(name, dir_fd=parent)
        except FileNotFoundError:
            raise _not_found(parts) from None
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise WorkspacePathError(
                    "The directory is not empty; remove it recursively.",
                    code="directory_not_empty",
                ) from None
            raise


def workspace_size(root: Path) -> int:
    """Total size in bytes (``st_size``) of everything below ``root``; links are not followed.

    Hard-linked files are counted once; directories themselves count 0.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    with _dir_fd(root, []) as fd:
        for _parent, _name, _rel, st in iter_tree(fd):
            if stat_mod.S_ISDIR(st.st_mode):
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


def extract_archive(
    root: Path, path: str, archive: BinaryIO, *, max_bytes: int, max_files: int
) -> list[str]:
    """Extract a ``.tar``, ``.tar.gz``/``.tgz`` (also bz2/xz) or ``.zip`` into ``root/path``.

    The format is detected from the content. Every member is validated before anything is
    written (no absolute paths, no ``..``, no links leaving the destination, no devices or
    FIFOs; tar members also pass ``tarfile.data_filter``), then written through
    :func:`open_write`-style descriptor walks, so symlinks already in the workspace are never
    followed either.

    Args:
        root: workspace root on the host.
        path: destination directory relative to the root (created if missing).
        archive: the uploaded archive (a non-seekable stream is spooled to a temp file).
        max_bytes: limit on the total uncompressed size in bytes (declared and actual).
        max_files: limit on the number of members.

    Returns:
        The extracted paths relative to the workspace root, in archive order.

    Raises:
        PayloadTooLarge: over ``max_bytes`` (details ``limit_bytes``) or ``max_files``
            (details ``limit_files``).
        WorkspacePathError: a bad member (details ``member``) or an invalid/unsupported archive
            (code ``invalid_archive``).
    """
    from sandboxes import _archive  # local import: _archive builds on this module's helpers

    return _archive.extract(root, path, archive, max_bytes=max_bytes, max_files=max_files)


def connect_unix(root: Path, path: str, *, timeout_s: float = 5.0) -> socket.socket:
    """Connect to the Unix socket ``root/path``, a socket the sandbox serves in its workspace.

    The sandbox could swap the socket for a symlink to a host socket (a container engine's,
    a database's): the final component is opened with ``O_PATH|O_NOFOLLOW``, checked to be a
    socket, and connected through ``/proc/self/fd/N``, which names that very inode, so no name
    is looked up twice. Returns a connected, non-blocking socket.

    Raises:
        WorkspaceFileNotFound: missing, or a symlink anywhere in the path.
        WorkspacePathError: invalid path, or not a socket.
        ConnectionRefusedError: nobody listens on it (a stale socket file).
    """
    parts = _split(path)
    if not parts:
        raise WorkspacePathError("The path is a directory.")
    with _dir_fd(root, parts[:-1]) as parent:
        try:
            fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EACCES):
                raise _not_found(parts) from None
            raise
    try:
        if not stat_mod.S_ISSOCK(os.fstat(fd).st_mode):
            raise WorkspacePathError("The path is not a socket.")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout_s)
            sock.connect(f"/proc/self/fd/{fd}")
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)
