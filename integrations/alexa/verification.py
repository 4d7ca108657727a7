"""Checking that a request really comes from Alexa, with the ASK SDK's verifiers.

``RequestVerifier`` (ask_sdk_webservice_support) checks the ``SignatureCertChainUrl`` header
(https://s3.amazonaws.com/echo.api/…), downloads that certificate chain, validates it up to a
trusted root (certvalidator) and for the ``echo-api.amazon.com`` name, then checks the
``Signature-256`` header: base64 of an RSA PKCS#1 v1.5 signature over SHA-256 of the raw body.
``TimestampVerifier`` refuses a request whose ``request.timestamp`` is more than 150 s away.

:class:`AlexaRequestVerifier` is the SDK's ``RequestVerifier`` with these changes; with the
default settings it accepts and refuses exactly what the SDK does:

- ``ALEXA_CERT_URL_ALLOWLIST``: certificate chain URL prefixes accepted besides Amazon's
  (a test rig serving its own chain);
- ``ALEXA_TRUSTED_CA_FILE``: roots trusted instead of the system trust store, for the chain
  and for the HTTPS download of it;
- the chain is downloaded with a timeout and a size limit (the SDK's ``urlopen`` has neither)
  and cached per URL (bounded);
- the signing certificate's validity is read with timezone-aware datetimes (the SDK reads
  attributes cryptography deprecated; same check).

The SDK's import needs :mod:`integrations.alexa.compat` first (oscrypto cannot read the
version of OpenSSL 3.0.1x otherwise).
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlparse

import httpx
from asn1crypto import pem
from cryptography.x509 import (
    Certificate,
    DNSName,
    ExtensionNotFound,
    ExtensionOID,
    SubjectAlternativeName,
)
from django.conf import settings

from integrations.alexa.compat import fix_oscrypto_version_detection
from runtime_project.exceptions import ApplicationError

fix_oscrypto_version_detection()  # before the SDK imports certvalidator, which imports oscrypto

from ask_sdk_webservice_support.verifier import (  # noqa: E402
    RequestVerifier,
    TimestampVerifier,
    VerificationException,
)
from ask_sdk_webservice_support.verifier_constants import CERT_CHAIN_DOMAIN  # noqa: E402
from certvalidator import CertificateValidator, ValidationContext  # noqa: E402
from certvalidator.errors import PathError, ValidationError  # noqa: E402

CHAIN_FETCH_TIMEOUT_S = 5.0
CHAIN_MAX_BYTES = 64 * 1024  # Amazon's chain is about 6 KiB
CHAIN_CACHE_SIZE = 32


class AlexaVerificationFailed(ApplicationError):
    """The request's signature, certificate chain or timestamp did not verify (Amazon wants a
    400 then)."""

    code = "alexa_verification_failed"


class AlexaRequestVerifier(RequestVerifier):  # type: ignore[misc]
    """The SDK's ``RequestVerifier`` with an allowlist of chain URLs and trusted roots of our
    choosing (see the module docstring).

    Args:
        url_allowlist: URL prefixes (``https://host:port/path/``) accepted besides Amazon's.
        trusted_roots_pem: PEM root certificates trusted instead of the system's; ``None``:
            the system trust store (the SDK's behaviour).
    """

    def __init__(
        self, *, url_allowlist: tuple[str, ...] = (), trusted_roots_pem: bytes | None = None
    ) -> None:
        super().__init__()
        self._url_allowlist = url_allowlist
        self._trust_roots: list[bytes] | None = None
        self._tls: ssl.SSLContext | bool = True
        if trusted_roots_pem is not None:
            self._trust_roots = [der for _, _, der in pem.unarmor(trusted_roots_pem, multiple=True)]
            if not self._trust_roots:
                raise ValueError("No PEM certificate in the trusted roots.")
            self._tls = ssl.create_default_context(cadata=trusted_roots_pem.decode("ascii"))
        self._cert_cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_lock = threading.Lock()  # requests are verified in several threads

    def _validate_certificate_url(self, cert_url: str) -> None:
        if any(_url_has_prefix(cert_url, prefix) for prefix in self._url_allowlist):
            return
        super()._validate_certificate_url(cert_url)

    def _load_cert_chain(self, cert_url: str) -> bytes:
        with self._cache_lock:
            cached = self._cert_cache.get(cert_url)
            if cached is not None:
                self._cert_cache.move_to_end(cert_url)
                return cached
        try:
            # The URL passed _validate_certificate_url: Amazon's S3 or an allowlisted prefix.
            with (
                httpx.Client(timeout=CHAIN_FETCH_TIMEOUT_S, verify=self._tls) as client,
                client.stream("GET", cert_url) as response,
            ):
                if response.status_code != 200:
                    raise VerificationException(
                        f"Certificate chain URL answered {response.status_code}"
                    )
                data = b""
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > CHAIN_MAX_BYTES:
                        raise VerificationException("Certificate chain too large")
        except httpx.HTTPError as exc:
            raise VerificationException("Unable to load certificate from URL", exc) from exc
        with self._cache_lock:
            self._cert_cache[cert_url] = data
            while len(self._cert_cache) > CHAIN_CACHE_SIZE:
                self._cert_cache.popitem(last=False)
        return data

    def _validate_cert_chain(self, cert_chain: bytes) -> None:
        if self._trust_roots is None:
            super()._validate_cert_chain(cert_chain)  # the system trust store
            return
        # The SDK's method, with our roots as the validation context's trust roots.
        try:
            blocks = [der for _, _, der in pem.unarmor(cert_chain, multiple=True)]
            if not blocks:
                raise VerificationException("Certificate chain is empty")
            context = ValidationContext(trust_roots=self._trust_roots)
            validator = CertificateValidator(blocks[0], blocks[1:], validation_context=context)
            validator.validate_usage(key_usage={"digital_signature"})
        except (PathError, ValidationError, ValueError, TypeError) as exc:
            raise VerificationException("Certificate chain is not valid", exc) from exc

    def _validate_end_certificate(self, x509_cert: Certificate) -> None:
        now = datetime.now(tz=UTC)
        if not (x509_cert.not_valid_before_utc <= now <= x509_cert.not_valid_after_utc):
            raise VerificationException("Signing Certificate expired")
        try:
            ext = x509_cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        except ExtensionNotFound as exc:
            raise VerificationException("Signing Certificate has no alternative names") from exc
        names = cast(SubjectAlternativeName, ext.value).get_values_for_type(DNSName)
        if CERT_CHAIN_DOMAIN not in names:
            raise VerificationException(
                f"{CERT_CHAIN_DOMAIN} domain missing in Signature Certificate Chain"
            )


def _url_has_prefix(url: str, prefix: str) -> bool:
    """Whether ``url`` is under ``prefix``: same scheme, host and port, and a normalized path
    inside the prefix's path (``..`` cannot climb out of it)."""
    try:
        got, want = urlparse(url), urlparse(prefix)
        got_port, want_port = got.port, want.port
    except ValueError:
        return False
    default = {"https": 443, "http": 80}
    if got.scheme.lower() != want.scheme.lower() or not got.hostname:
        return False
    if got.hostname.lower() != (want.hostname or "").lower():
        return False
    if (got_port or default.get(got.scheme.lower())) != (
        want_port or default.get(want.scheme.lower())
    ):
        return False
    path = os.path.normpath(got.path or "/")
    base = want.path if want.path.endswith("/") else want.path + "/"
    return (path + "/").startswith(base) and path + "/" != base


@functools.lru_cache(maxsize=4)
def _request_verifier(allowlist: tuple[str, ...], ca_file: str) -> AlexaRequestVerifier:
    """One verifier per configuration, so its chain cache lives across requests."""
    roots = None
    if ca_file:
        with open(ca_file, "rb") as fh:
            roots = fh.read()
    return AlexaRequestVerifier(url_allowlist=allowlist, trusted_roots_pem=roots)


def verify_request(*, headers: Mapping[str, str], body: str, envelope: Any) -> None:
    """Verify an Alexa request as the settings say (sync: it may download the certificate
    chain; call it through ``sync_to_async``).

    Args:
        headers: the HTTP request headers (any case).
        body: the raw body, decoded as UTF-8, exactly as received.
        envelope: the body deserialized as an ``ask_sdk_model.RequestEnvelope``.

    Raises:
        AlexaVerificationFailed: a missing or wrong signature, a chain that is not Amazon's
            (or not from an allowlisted URL and a trusted root), a timestamp more than 150 s
            away.
    """
    verifiers: list[Any] = []
    if settings.ALEXA_VERIFY_SIGNATURE:
        verifiers.append(
            _request_verifier(
                tuple(settings.ALEXA_CERT_URL_ALLOWLIST), settings.ALEXA_TRUSTED_CA_FILE
            )
        )
    if settings.ALEXA_VERIFY_TIMESTAMP:
        verifiers.append(TimestampVerifier())
    for verifier in verifiers:
        try:
            verifier.verify(
                headers=dict(headers),
                serialized_request_env=body,
                deserialized_request_env=envelope,
            )
        except VerificationException as exc:
            raise AlexaVerificationFailed(
                "The request could not be verified as coming from Alexa.",
                details={"reason": str(exc.args[0]) if exc.args else "verification failed"},
            ) from exc
        except (ValueError, TypeError) as exc:  # a signature not in base64, a garbled chain
            raise AlexaVerificationFailed(
                "The request could not be verified as coming from Alexa.",
                details={"reason": "malformed signature or certificate chain"},
            ) from exc
