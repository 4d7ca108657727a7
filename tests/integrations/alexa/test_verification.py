"""The ASK SDK's verifiers, made importable by the oscrypto shim, really verify: a good
request passes; a tampered body, another key, an untrusted chain, a chain URL outside the
allowlist, a missing SHA-256 signature and a stale timestamp are refused."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import pytest
from ask_sdk_core.serialize import DefaultSerializer
from ask_sdk_model import RequestEnvelope
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.alexa import compat
from integrations.alexa.verification import (
    AlexaRequestVerifier,
    AlexaVerificationFailed,
    _request_verifier,
    _url_has_prefix,
    verify_request,
)
from tests.integrations.alexa.conftest import AlexaRig
from tests.integrations.alexa.pki import CHAIN_PATH, sign


def _verify(body: bytes, headers: dict[str, str]) -> None:
    text = body.decode()
    envelope = DefaultSerializer().deserialize(payload=text, obj_type=RequestEnvelope)
    verify_request(headers=headers, body=text, envelope=envelope)


def _reason(exc: pytest.ExceptionInfo[AlexaVerificationFailed]) -> str:
    return str(exc.value.details["reason"])


def test_the_shim_makes_oscrypto_read_this_openssl_version() -> None:
    version = compat.openssl_version()
    assert isinstance(version, tuple) and all(isinstance(p, int) for p in version[:3])
    assert version >= (1, 1)
    assert "oscrypto._openssl._libcrypto" in sys.modules
    # The import hook is gone again.
    assert not any(type(f).__name__ == "_VersionFixFinder" for f in sys.meta_path)


def test_the_shim_replaces_exactly_the_broken_regex() -> None:
    import re

    broken = re.compile(json.loads('"' + compat.BROKEN_VERSION_REGEX.strip("'") + '"'))
    fixed = re.compile(json.loads('"' + compat.FIXED_VERSION_REGEX.strip("'") + '"'))
    version_string = "OpenSSL 3.0.19 27 Jan 2026"
    assert broken.search(version_string) is None  # the upstream bug
    match = fixed.search(version_string)
    assert match is not None and match.group(1) == "3.0.19"
    match = fixed.search("OpenSSL 1.1.1w  11 Sep 2023")  # what already worked still does
    assert match is not None and match.group(1) == "1.1.1w"


def test_a_correctly_signed_request_verifies(alexa_settings: AlexaRig) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    _verify(body, headers)


def test_a_tampered_body_is_refused(alexa_settings: AlexaRig) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    tampered = body.replace(b"LaunchRequest", b"IntentRequest", 1)
    with pytest.raises(AlexaVerificationFailed) as exc:
        _verify(tampered, headers)
    assert "not valid" in _reason(exc)


def test_a_signature_by_another_key_is_refused(alexa_settings: AlexaRig) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers["Signature-256"] = sign(body, other)
    with pytest.raises(AlexaVerificationFailed):
        _verify(body, headers)


def test_a_chain_under_an_untrusted_root_is_refused(alexa_settings: AlexaRig) -> None:
    # Signed with the real signing key, but the chain leads to a CA nobody trusts.
    body, headers = alexa_settings.request("LaunchRequest")
    headers["SignatureCertChainUrl"] = alexa_settings.rogue_chain_url
    with pytest.raises(AlexaVerificationFailed) as exc:
        _verify(body, headers)
    assert "chain" in _reason(exc).lower()


def test_without_our_root_the_system_trust_store_refuses_the_test_chain(
    alexa_settings: AlexaRig, settings: Any
) -> None:
    settings.ALEXA_TRUSTED_CA_FILE = ""
    body, headers = alexa_settings.request("LaunchRequest")
    with pytest.raises(AlexaVerificationFailed):
        _verify(body, headers)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/echo.api/cert.pem",
        "http://127.0.0.1:{port}/echo.api/cert.pem",  # another scheme
        "https://127.0.0.1:1/echo.api/cert.pem",  # another port
        "https://127.0.0.1:{port}/other/cert.pem",
        "https://127.0.0.1:{port}/echo.api/../other/cert.pem",
        "https://s3.amazonaws.com/not-echo.api/cert.pem",
    ],
)
def test_chain_urls_outside_amazon_and_the_allowlist_are_refused_unfetched(
    alexa_settings: AlexaRig, url: str
) -> None:
    url = url.format(port=alexa_settings.server.port)
    body, headers = alexa_settings.request("LaunchRequest")
    headers["SignatureCertChainUrl"] = url
    before = dict(alexa_settings.server.hits)
    with pytest.raises(AlexaVerificationFailed) as exc:
        _verify(body, headers)
    assert "Signature Certificate URL" in _reason(exc)
    assert alexa_settings.server.hits == before


@pytest.mark.parametrize("path", ["/echo.api/missing.pem", "/echo.api/garbage.pem"])
def test_a_chain_that_cannot_be_loaded_is_refused(alexa_settings: AlexaRig, path: str) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    headers["SignatureCertChainUrl"] = alexa_settings.server.url(path)
    with pytest.raises(AlexaVerificationFailed):
        _verify(body, headers)


def test_amazons_own_chain_url_rule_is_unchanged() -> None:
    verifier = AlexaRequestVerifier()
    verifier._validate_certificate_url("https://s3.amazonaws.com/echo.api/echo-api-cert-12.pem")
    verifier._validate_certificate_url("https://s3.amazonaws.com:443/echo.api/../echo.api/x.pem")
    for url in (
        "https://s3.amazonaws.com/EcHo.aPi/echo-api-cert.pem",
        "http://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        "https://notamazon.com/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com:563/echo.api/echo-api-cert.pem",
    ):
        with pytest.raises(Exception, match="Signature Certificate URL"):
            verifier._validate_certificate_url(url)


def test_url_prefix_matching() -> None:
    prefix = "https://127.0.0.1:8443/echo.api/"
    assert _url_has_prefix("https://127.0.0.1:8443/echo.api/a.pem", prefix)
    assert _url_has_prefix("HTTPS://127.0.0.1:8443/echo.api/x/../a.pem", prefix)
    assert not _url_has_prefix("https://127.0.0.1:8443/echo.api/", prefix)
    assert not _url_has_prefix("https://127.0.0.1:8443/echo.apix/a.pem", prefix)
    assert not _url_has_prefix("https://127.0.0.1/echo.api/a.pem", prefix)
    assert not _url_has_prefix("https://127.0.0.1:bad/echo.api/a.pem", prefix)


def test_only_the_sha1_signature_header_is_refused(alexa_settings: AlexaRig) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    headers["Signature"] = headers.pop("Signature-256")
    with pytest.raises(AlexaVerificationFailed) as exc:
        _verify(body, headers)
    assert "Missing Signature" in _reason(exc)


def test_a_signature_that_is_not_base64_is_refused(alexa_settings: AlexaRig) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    headers["Signature-256"] = "***not base64***"
    with pytest.raises(AlexaVerificationFailed):
        _verify(body, headers)


def test_a_stale_timestamp_is_refused_even_when_signed(alexa_settings: AlexaRig) -> None:
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=151)
    body, headers = alexa_settings.request("LaunchRequest", timestamp=stale)
    with pytest.raises(AlexaVerificationFailed) as exc:
        _verify(body, headers)
    assert "Timestamp" in _reason(exc)
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
    _verify(*alexa_settings.request("LaunchRequest", timestamp=recent))


def test_the_chain_is_downloaded_once_and_cached(alexa_settings: AlexaRig) -> None:
    _request_verifier.cache_clear()
    before = alexa_settings.server.hits.get(CHAIN_PATH, 0)
    for _ in range(3):
        _verify(*alexa_settings.request("LaunchRequest"))
    assert alexa_settings.server.hits[CHAIN_PATH] == before + 1


def test_verification_can_be_turned_off(alexa_settings: AlexaRig, settings: Any) -> None:
    settings.ALEXA_VERIFY_SIGNATURE = False
    settings.ALEXA_VERIFY_TIMESTAMP = False
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    body = alexa_settings.request("LaunchRequest", timestamp=stale)[0]
    _verify(body, {})
