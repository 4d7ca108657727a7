"""Helpers for the OAuth2 tests: PKCE pairs (RFC 7636), app registration through
``create_oauth_app``, the consent round trip of a logged-in browser, the code exchange."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.core.management import call_command
from django.test import Client

REDIRECT = "http://127.0.0.1/cb"


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for S256 (RFC 7636 §4.1, §4.2)."""
    verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def create_app(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("create_oauth_app", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def authorize_params(client_id: str, challenge: str | None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "sessions:read tasks:write",
        "state": "xyz",
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return params | extra


def get_code(browser: Client, client_id: str, challenge: str, **extra: str) -> str:
    """The consent round trip of a logged-in browser: GET the page, POST "Authorize", read the
    code from the redirect to the client."""
    params = authorize_params(client_id, challenge, **extra)
    page = browser.get("/o/authorize/", params)
    assert page.status_code == 200, page.content[:500]
    form = {k: v for k, v in params.items()} | {"allow": "Authorize"}
    redirect = browser.post("/o/authorize/", form)
    assert redirect.status_code == 302, redirect.content[:500]
    location = urlsplit(redirect["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    assert query["iss"] == ["http://testserver"]  # RFC 9207 mix-up defence
    return query["code"][0]


def exchange(client_id: str, code: str, verifier: str | None, secret: str | None = None) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = {}
    if secret:
        headers["HTTP_AUTHORIZATION"] = basic(client_id, secret)
    else:
        data["client_id"] = client_id
    return Client().post(
        "/o/token/", urlencode(data), "application/x-www-form-urlencoded", **headers
    )


def bearer(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]
