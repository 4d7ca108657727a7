"""The OpenAPI schema: valid, covering every ``/api/v1/`` URL, documenting errors and auth on
every operation, and unchanged unless on purpose (``tests/openapi.yaml`` is the snapshot).

Regenerate the snapshot after an intended API change::

    UPDATE_SCHEMA_SNAPSHOT=1 .venv/bin/pytest tests/test_openapi_schema.py
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer
from openapi_spec_validator import validate

SNAPSHOT = Path(__file__).with_name("openapi.yaml")
API_PREFIX = "/api/v1/"
METHODS = {"get", "post", "put", "patch", "delete"}
# drf-spectacular names the enums of the two `status` fields (session, task) by a hash until
# SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] names them; that is the only warning accepted.
ACCEPTED_WARNINGS = ("enum naming encountered a non-optimally resolvable collision",)


@pytest.fixture(scope="module")
def generated() -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema, dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache)


@pytest.fixture(scope="module")
def schema(generated: Any) -> dict[str, Any]:
    return generated[0]


def _api_routes(patterns: list[Any], prefix: str = "/") -> list[str]:
    """Every URL of the URLconf as an OpenAPI-style path (``<str:x>`` → ``{x}``)."""
    routes: list[str] = []
    for pattern in patterns:
        route = prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            routes += _api_routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            routes.append(route)
    return [r for r in routes if r.startswith(API_PREFIX)]


def _shape(path: str) -> str:
    """Compare paths without their parameter names (``{id}`` and ``{session_id}`` agree)."""
    return re.sub(r"\{\w+\}", "{}", path)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_schema_is_valid_openapi(schema):
    validate(schema)


def test_generation_reports_no_errors_or_new_warnings(generated):
    _, warnings, errors = generated

    assert not errors, errors
    unexpected = [w for w in warnings if not any(a in w for a in ACCEPTED_WARNINGS)]
    assert not unexpected, unexpected


def test_every_api_url_is_documented(schema):
    routes = _api_routes(get_resolver().url_patterns)
    documented = {_shape(path) for path in schema["paths"]}

    assert len(routes) >= 15  # the walk found the URLconf
    missing = [route for route in routes if _shape(route) not in documented]
    assert not missing, f"URLs missing from the OpenAPI schema: {missing}"


def test_every_operation_has_an_id_a_summary_a_tag_and_the_error_shape(schema):
    operations = _operations(schema)
    ids = Counter(op["operationId"] for _, _, op in operations)

    assert [i for i, n in ids.items() if n > 1] == []
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        if operation.get("security") == [{}]:
            # Public on purpose (the share-link endpoints: the token in the path is the
            # credential): no 401, but the error shape for the statuses it documents.
            assert path.startswith(f"{API_PREFIX}shared/"), f"{where} is public"
            errors = [r for s, r in operation["responses"].items() if s.startswith(("4", "5"))]
            assert errors, where
            for response in errors:
                schema_ref = response["content"]["application/json"]["schema"]
                assert schema_ref == {"$ref": "#/components/schemas/Error"}, where
            continue
        unauthorized = operation["responses"].get("401", {})
        error_ref = unauthorized.get("content", {}).get("application/json", {}).get("schema")
        assert error_ref == {"$ref": "#/components/schemas/Error"}, where
        assert {"tokenAuth": []} in operation.get("security", []), where


def test_the_error_component_is_the_envelope(schema):
    components = schema["components"]["schemas"]
    error = components["Error"]
    body = components[error["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]

    assert set(body["properties"]) == {"code", "message", "details"}


def test_streams_and_files_document_their_media_types(schema):
    paths = schema["paths"]
    task_create = paths["/api/v1/sessions/{session_id}/tasks"]["post"]["responses"]["200"]
    oneshot = paths["/api/v1/oneshot"]["post"]["responses"]["200"]
    download = paths["/api/v1/sessions/{session_id}/workspace/files/{file_path}"]

    assert "text/event-stream" in task_create["content"]
    assert "text/event-stream" in oneshot["content"]
    # A download's content type is the file's own (guessed from its name): any media type.
    assert "*/*" in download["get"]["responses"]["200"]["content"]
    assert "application/octet-stream" in download["put"]["requestBody"]["content"]
    # Before OpenAPI 3.2, an SSE response's schema describes one event (what clients parse).
    event = {"$ref": "#/components/schemas/ServerSentEvent"}
    sse = [
        media["schema"]
        for item in paths.values()
        for operation in item.values()
        for response in operation.get("responses", {}).values()
        for name, media in response.get("content", {}).items()
        if name == "text/event-stream"
    ]
    assert len(sse) >= 8 and all(s == event for s in sse), sse
    assert schema["components"]["schemas"]["ServerSentEvent"]["required"] == ["event", "data"]
    upload = paths["/api/v1/sessions/{session_id}/workspace/files"]["post"]["requestBody"]
    assert list(upload["content"]) == ["multipart/form-data"]


def test_the_schema_matches_the_committed_snapshot(schema):
    rendered = OpenApiYamlRenderer().render(schema, renderer_context={}).decode()
    if os.environ.get("UPDATE_SCHEMA_SNAPSHOT"):
        SNAPSHOT.write_text(rendered)
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if rendered != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    rendered.splitlines(keepends=True),
                    "tests/openapi.yaml (committed)",
                    "generated",
                )
            )[:200]
        )
        pytest.fail(
            "The OpenAPI schema changed. If the change is intended, regenerate the snapshot "
            "with `UPDATE_SCHEMA_SNAPSHOT=1 .venv/bin/pytest tests/test_openapi_schema.py` "
            f"and commit tests/openapi.yaml.\n{diff}"
        )
