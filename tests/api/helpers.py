"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

API = "/api/v1"


def error_of(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Check ``response`` is an error in the one shape (``{"error": {code, message,
    details}}``) with ``status`` (and ``code``), and return the ``error`` object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, body
    return error
