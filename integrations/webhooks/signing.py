"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec v1).

A secret is ``whsec_`` + base64 of 32 random bytes; the HMAC key is the decoded bytes. Each
request carries ``Webhook-Id`` (the message id), ``Webhook-Timestamp`` (integer Unix seconds of
the attempt) and ``Webhook-Signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, one
per active secret, over ``"{id}.{timestamp}.{body}"`` (the raw body bytes). Receivers verify
with any Standard Webhooks library (``standardwebhooks`` on PyPI) or by hand
(docs/integrations/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 32  # the spec asks for 24 to 64 bytes


def secret_generate() -> str:
    """A new signing secret, ``whsec_<base64 of 32 random bytes>``."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: list[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``Webhook-Signature`` value: one ``v1,…`` entry per secret, space-separated."""
    return " ".join(sign(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)
