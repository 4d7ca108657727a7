"""Encryption at rest of stored credentials: Fernet tokens under a ``MultiFernet`` key ring.

Keys come from ``settings.CREDENTIALS_ENCRYPTION_KEYS`` (env ``CREDENTIALS_ENCRYPTION_KEYS``,
comma-separated Fernet keys, each the output of ``Fernet.generate_key()``). The first key
encrypts; every key decrypts, so a key is rotated by putting a new key first, re-encrypting
(``manage.py rotate_credential_keys``, or any update of a credential), then dropping the old key.

Without that setting the ring is one key derived from ``SECRET_KEY`` with HKDF-SHA256. Rotating
``SECRET_KEY`` then makes every stored credential unreadable (they must be stored again): set
``CREDENTIALS_ENCRYPTION_KEYS`` to ``derive_key(<old SECRET_KEY>)`` first to keep them.

This module imports nothing from the project and is safe to import from ``settings.py``. Errors
are ``ValueError`` (bad keys) and ``cryptography.fernet.InvalidToken`` (a token no key of the
ring opens); callers translate them. Nothing here logs, and no error carries a plaintext.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

__all__ = ["InvalidToken", "check_keys", "decrypt", "derive_key", "encrypt", "rotate"]

# Domain separation: the derived key is used for nothing but stored provider credentials.
_HKDF_INFO = b"agent-runtime/providers/credentials/fernet/v1"


def derive_key(secret_key: str) -> str:
    """The Fernet key (urlsafe base64 of 32 bytes) derived from ``secret_key`` with HKDF."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())).decode()


def check_keys(keys: Iterable[str]) -> list[str]:
    """``keys`` stripped of blanks, each a valid Fernet key.

    Raises:
        ValueError: a key is not a Fernet key (the message names its position, never the key),
            or there is none.
    """
    cleaned = [k.strip() for k in keys if k.strip()]
    if not cleaned:
        raise ValueError("no key")
    for position, key in enumerate(cleaned, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ValueError(f"key {position} is not a Fernet key") from None
    return cleaned


def _configured_keys() -> tuple[str, ...]:
    keys = getattr(settings, "CREDENTIALS_ENCRYPTION_KEYS", None) or []
    if isinstance(keys, str):
        keys = keys.split(",")
    cleaned = [k.strip() for k in keys if k.strip()]
    return tuple(cleaned) if cleaned else (derive_key(settings.SECRET_KEY),)


@functools.lru_cache(maxsize=8)
def _ring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in check_keys(keys)])


def _fernet() -> MultiFernet:
    return _ring(_configured_keys())


def encrypt(plaintext: str) -> str:
    """A Fernet token (ASCII) of ``plaintext`` under the first configured key."""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of ``token``, opened with any configured key.

    Raises:
        InvalidToken: no configured key opens it (keys changed or lost), or it was tampered with.
    """
    return _fernet().decrypt(token.encode("ascii")).decode()


def rotate(token: str) -> str:
    """``token`` re-encrypted under the first configured key (same plaintext).

    Raises:
        InvalidToken: as :func:`decrypt`.
    """
    return _fernet().rotate(token.encode("ascii")).decode("ascii")
