"""A local stand-in for Amazon's Alexa signing PKI, and requests signed the way Alexa signs.

- :class:`Pki` makes a root CA, an intermediate CA, a signing certificate for
  ``echo-api.amazon.com`` (what the verifier requires of Amazon's) issued by the intermediate,
  and a TLS certificate for 127.0.0.1 issued by the root; plus a "rogue" CA and signing
  certificate of the same names that nobody trusts.
- :class:`ChainServer` serves certificate chains over HTTPS from a thread (the verifier
  downloads the chain named by ``SignatureCertChainUrl``, as it does from Amazon's S3).
- :func:`signed_headers`: Alexa's headers for a body: ``SignatureCertChainUrl`` and
  ``Signature-256``, base64 of RSA PKCS#1 v1.5 over SHA-256 of the raw body bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALEXA_DOMAIN = "echo-api.amazon.com"
CHAIN_PATH = "/echo.api/echo-api-cert-test.pem"
ROGUE_CHAIN_PATH = "/echo.api/rogue.pem"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Alexa test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    *,
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    ca: bool,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
    not_after_days: int = 30,
    server_auth: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=not_after_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if server_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class Pki:
    root_key: rsa.RSAPrivateKey = field(default_factory=_key)
    intermediate_key: rsa.RSAPrivateKey = field(default_factory=_key)
    signing_key: rsa.RSAPrivateKey = field(default_factory=_key)
    tls_key: rsa.RSAPrivateKey = field(default_factory=_key)
    rogue_key: rsa.RSAPrivateKey = field(default_factory=_key)

    def __post_init__(self) -> None:
        self.root = _cert(subject="Test Root CA", key=self.root_key, issuer=None, ca=True)
        self.intermediate = _cert(
            subject="Test Intermediate CA",
            key=self.intermediate_key,
            issuer=(self.root, self.root_key),
            ca=True,
        )
        self.signing = _cert(
            subject=ALEXA_DOMAIN,
            key=self.signing_key,
            issuer=(self.intermediate, self.intermediate_key),
            ca=False,
            dns=[ALEXA_DOMAIN],
        )
        self.tls = _cert(
            subject="127.0.0.1",
            key=self.tls_key,
            issuer=(self.root, self.root_key),
            ca=False,
            ips=["127.0.0.1"],
            server_auth=True,
        )
        # Same names, but under a CA nobody trusts.
        rogue_ca = _cert(subject="Test Root CA", key=self.rogue_key, issuer=None, ca=True)
        self.rogue_signing = _cert(
            subject=ALEXA_DOMAIN,
            key=self.signing_key,
            issuer=(rogue_ca, self.rogue_key),
            ca=False,
            dns=[ALEXA_DOMAIN],
        )
        self.rogue_chain = pem(self.rogue_signing, rogue_ca)

    @property
    def chain(self) -> bytes:
        """What Amazon serves: the signing certificate first, then the intermediates."""
        return pem(self.signing, self.intermediate)

    def write_root(self, directory: Path) -> Path:
        path = directory / "alexa-test-root.pem"
        path.write_bytes(pem(self.root))
        return path


class ChainServer:
    """An HTTPS server on 127.0.0.1 (certificate from ``pki``) serving ``files`` (path →
    bytes), counting the requests per path."""

    def __init__(self, pki: Pki, files: dict[str, bytes], workdir: Path) -> None:
        self.files = files
        self.hits: dict[str, int] = {}
        cert_file = workdir / "tls.pem"
        key_file = workdir / "tls.key"
        cert_file.write_bytes(pem(pki.tls))
        key_file.write_bytes(
            pki.tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-pem-file")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sign(body: bytes, key: rsa.RSAPrivateKey) -> str:
    """Alexa's ``Signature-256``: base64 of RSA PKCS#1 v1.5 over SHA-256 of the body."""
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def signed_headers(body: bytes, key: rsa.RSAPrivateKey, chain_url: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "SignatureCertChainUrl": chain_url,
        "Signature-256": sign(body, key),
    }


def alexa_request(
    request_type: str,
    *,
    application_id: str,
    session_id: str = "amzn1.echo-api.session.test-1",
    intent: str | None = None,
    slots: dict[str, str] | None = None,
    timestamp: dt.datetime | None = None,
    new: bool = False,
) -> bytes:
    """The JSON body of an Alexa request (the fields ``ask_sdk_model`` reads), as bytes."""
    stamp = (timestamp or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request: dict[str, Any] = {
        "type": request_type,
        "requestId": f"amzn1.echo-api.request.{uuid.uuid4()}",
        "timestamp": stamp,
        "locale": "en-US",
    }
    if request_type == "IntentRequest":
        request["dialogState"] = "COMPLETED"
        request["intent"] = {
            "name": intent,
            "confirmationStatus": "NONE",
            "slots": {
                name: {"name": name, "value": value, "confirmationStatus": "NONE"}
                for name, value in (slots or {}).items()
            },
        }
    if request_type == "SessionEndedRequest":
        request["reason"] = "USER_INITIATED"
    application = {"applicationId": application_id}
    user = {"userId": "amzn1.ask.account.TESTUSER"}
    body = {
        "version": "1.0",
        "session": {
            "new": new,
            "sessionId": session_id,
            "application": application,
            "attributes": {},
            "user": user,
        },
        "context": {
            "System": {
                "application": application,
                "user": user,
                "device": {"deviceId": "amzn1.ask.device.TEST", "supportedInterfaces": {}},
                "apiEndpoint": "https://api.amazonalexa.com",
            }
        },
        "request": request,
    }
    return json.dumps(body).encode()
