"""Make the ASK SDK's request verifier importable with this system's OpenSSL.

The problem
    ``ask_sdk_webservice_support.verifier`` imports ``certvalidator``, which imports
    ``oscrypto``. oscrypto 1.3.0 (its latest release) reads the version of the system's
    libcrypto with the regex ``\\b(\\d\\.\\d\\.\\d[a-z]*)\\b``, which cannot match a two-digit
    component such as ``OpenSSL 3.0.19``, and the import fails with
    ``LibraryNotFoundError: Error detecting the version of libcrypto``. Upstream bug
    wbond/oscrypto#75 / #78, fixed on oscrypto's master (``\\d+`` per component) but not
    released. ``oscrypto.use_openssl()`` does not help: it picks the library file, and the
    version string is still read from that library.

The shim
    :func:`fix_oscrypto_version_detection`, called before the SDK is imported, loads the two
    modules that parse the version (``oscrypto._openssl._libcrypto_cffi`` and
    ``_libcrypto_ctypes``) from their installed source with that one regex replaced by
    upstream's fixed one, through an import hook that is removed again right after. Nothing else
    changes; the installed files (and their bytecode caches) stay untouched. It is a no-op when
    the source no longer has the old regex (a fixed oscrypto release), when oscrypto is already
    imported, and on platforms where oscrypto does not use OpenSSL. Delete this module once an
    oscrypto release with the fix is installed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import CodeType, ModuleType
from typing import Any

# The version regexes exactly as they appear in oscrypto 1.3.0's source, and upstream's fix.
BROKEN_VERSION_REGEX = "'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d[a-z]*)\\\\b'"
FIXED_VERSION_REGEX = "'\\\\b(\\\\d+\\\\.\\\\d+\\\\.\\\\d+[a-z]*)\\\\b'"
PATCHED_MODULES = frozenset(
    {"oscrypto._openssl._libcrypto_cffi", "oscrypto._openssl._libcrypto_ctypes"}
)

_lock = threading.Lock()


class _FixedVersionLoader(importlib.machinery.SourceFileLoader):
    """Loads the module from its source with the version regex fixed (never from, nor into,
    the bytecode cache, which holds the unfixed code)."""

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_source(fullname) or ""
        if source.count(BROKEN_VERSION_REGEX) == 1:
            source = source.replace(BROKEN_VERSION_REGEX, FIXED_VERSION_REGEX)
        return compile(source, self.path, "exec", dont_inherit=True)


class _VersionFixFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`PATCHED_MODULES` like the normal path finder does, with the loader above."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PATCHED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        spec.loader = _FixedVersionLoader(fullname, spec.origin)
        return spec


def fix_oscrypto_version_detection() -> None:
    """Import oscrypto's libcrypto binding with the version detection fixed (see the module
    docstring). Idempotent and thread-safe.

    Raises:
        oscrypto.errors.LibraryNotFoundError: libcrypto is missing, or its version still
            cannot be read.
    """
    with _lock:
        if "oscrypto._openssl._libcrypto" in sys.modules:
            return
        try:
            import oscrypto
        except ImportError:  # the SDK's own import will say what is missing
            return
        if oscrypto.backend() != "openssl":
            return
        finder = _VersionFixFinder()
        sys.meta_path.insert(0, finder)
        try:
            importlib.import_module("oscrypto._openssl._libcrypto")
        finally:
            sys.meta_path.remove(finder)


def openssl_version() -> Any:
    """The libcrypto version oscrypto detected, e.g. ``(3, 0, 19)`` (for the health of the
    shim in tests and logs)."""
    from oscrypto._openssl._libcrypto import libcrypto_version_info

    return libcrypto_version_info
