"""``collection_from_openapi`` on a small OpenAPI 3.1 document exercising what drf-spectacular
and the per-agent documents produce: tags, ``$ref`` parameters and bodies, path-level
parameters, ``allOf`` wrappers, 3.1 type lists, a recursive schema, form and file bodies,
public operations and a relative server URL."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from integrations.postman.convert import SCHEMA_URL, collection_from_openapi
from tests.integrations.postman.conftest import assert_valid

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pets", "version": "2.0", "description": "A pet store."},
    "servers": [{"url": "/v2"}],
    "tags": [{"name": "pets", "description": "Everything about pets"}, {"name": "unused"}],
    "security": [{"bearer": []}],
    "paths": {
        "/pets": {
            "get": {
                "operationId": "pets_list",
                "summary": "List pets",
                "tags": ["pets"],
                "parameters": [
                    {"$ref": "#/components/parameters/Limit"},
                    {"name": "kind", "in": "query", "required": True,
                     "schema": {"$ref": "#/components/schemas/Kind"}},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "The pets", "content": {"application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}}}},
                    "default": {"description": "Error"},
                },
            },
            "post": {
                "operationId": "pets_create",
                "summary": "Add a pet",
                "tags": ["pets", "admin"],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/PetInput"}},
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/PetInput"}},
                }},
                "responses": {"201": {"description": "", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Pet"}}}}},
            },
        },
        "/pets/{pet_id}/photo": {
            "parameters": [{"name": "pet_id", "in": "path", "required": True,
                            "description": "The pet's id.", "schema": {"type": "string", "format": "uuid"}}],
            "put": {
                "summary": "Upload a photo",
                "tags": ["pets"],
                "requestBody": {"content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"},
                                   "caption": {"type": "string", "default": "me"}}}}}},
                "responses": {"204": {"description": "Stored"}},
            },
            "get": {
                "summary": "Download the photo",
                "tags": ["pets"],
                "responses": {"200": {"description": "", "content": {"image/png": {}}}},
            },
        },
        "/pets/{pet_id}.json": {
            "get": {
                "summary": "Pet as a file",
                "parameters": [{"name": "pet_id", "in": "path", "required": True,
                                "example": "rex", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/login": {
            "post": {
                "summary": "Log in",
                "security": [{}],
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["user"],
                    "properties": {"user": {"type": "string", "example": "ann"},
                                   "remember": {"type": "boolean"}}}}}},
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/tree": {
            "get": {
                "summary": "The family tree",
                "tags": ["pets"],
                "responses": {"200": {"description": "", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Node"}}}}},
            },
        },
    },
    "components": {
        "parameters": {
            "Limit": {"name": "limit", "in": "query", "description": "Page size.",
                      "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        },
        "schemas": {
            "Kind": {"type": "string", "enum": ["cat", "dog"]},
            "PetInput": {
                "type": "object",
                "required": ["name", "kind", "born"],
                "properties": {
                    "name": {"type": "string", "example": "Rex"},
                    "kind": {"allOf": [{"$ref": "#/components/schemas/Kind"}], "default": "dog"},
                    "born": {"type": "string", "format": "date"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "weight": {"type": ["number", "null"]},
                    "id": {"type": "string", "readOnly": True},
                },
            },
            "Pet": {
                "allOf": [{"$ref": "#/components/schemas/PetInput"}],
                "properties": {"id": {"type": "string", "format": "uuid", "readOnly": True},
                               "secret": {"type": "string", "writeOnly": True}},
            },
            "Node": {
                "type": "object",
                "properties": {"name": {"type": "string"},
                               "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}},
            },
        },
    },
}  # fmt: skip


def _requests(collection: dict[str, Any]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """name → (folder, item), over folders and top-level items."""
    found: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for entry in collection["item"]:
        if "request" in entry:
            found[entry["name"]] = (None, entry)
        for item in entry.get("item", []):
            found[item["name"]] = (entry["name"], item)
    return found


def test_document_converts_to_a_valid_collection(
    collection_validator: jsonschema.Draft7Validator,
) -> None:
    collection = collection_from_openapi(DOCUMENT, name="Pets", base_url="https://pets.example/")
    assert_valid(collection_validator, collection)
    json.dumps(collection)  # JSON-serialisable as it is

    assert collection["info"]["name"] == "Pets"
    assert collection["info"]["schema"] == SCHEMA_URL
    assert collection["info"]["version"] == "2.0"
    assert "A pet store." in collection["info"]["description"]
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    assert variables == {"baseUrl": "https://pets.example/v2", "apiKey": ""}
    assert collection["auth"] == {
        "type": "bearer",
        "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}],
    }
    # One folder per used tag (first tag only, described), untagged operations at the top.
    assert [e["name"] for e in collection["item"]] == ["pets", "Pet as a file", "Log in"]
    assert collection["item"][0]["description"] == "Everything about pets"
    requests = _requests(collection)
    assert {name: folder for name, (folder, _) in requests.items()} == {
        "List pets": "pets", "Add a pet": "pets", "Upload a photo": "pets",
        "Download the photo": "pets", "The family tree": "pets",
        "Pet as a file": None, "Log in": None,
    }  # fmt: skip


def test_urls_parameters_and_headers() -> None:
    requests = _requests(collection_from_openapi(DOCUMENT, name="Pets", base_url="http://h"))
    listing = requests["List pets"][1]["request"]
    assert listing["method"] == "GET"
    url = listing["url"]
    assert url["host"] == ["{{baseUrl}}"] and url["path"] == ["pets"]
    # Required query parameters are sent (and in raw); optional ones are listed, disabled.
    assert url["raw"] == "{{baseUrl}}/pets?kind=cat"
    query = {q["key"]: q for q in url["query"]}
    assert query["kind"]["value"] == "cat" and query["kind"]["disabled"] is False
    assert query["limit"] == {
        "key": "limit", "value": "1", "description": "(Optional) Page size.", "disabled": True,
    }  # fmt: skip
    headers = {h["key"]: h for h in listing["header"]}
    assert headers["Accept"]["value"] == "application/json"
    assert headers["X-Trace"]["disabled"] is True
    assert "Content-Type" not in headers and "body" not in listing

    photo = requests["Upload a photo"][1]["request"]
    assert photo["url"]["path"] == ["pets", ":pet_id", "photo"]
    # A path variable without an example stays empty, to be filled in, with its description.
    assert photo["url"]["variable"] == [
        {"key": "pet_id", "value": "", "description": "(Required) The pet's id."}
    ]
    assert photo["url"]["raw"] == "{{baseUrl}}/pets/:pet_id/photo"
    assert requests["Download the photo"][1]["request"]["header"] == [
        {"key": "Accept", "value": "image/png"}
    ]
    # A parameter inside a segment is a Postman variable; its example is kept.
    as_file = requests["Pet as a file"][1]["request"]["url"]
    assert as_file["path"] == ["pets", "{{pet_id}}.json"]
    assert as_file["variable"][0]["value"] == "rex"


def test_bodies() -> None:
    requests = _requests(collection_from_openapi(DOCUMENT, name="Pets", base_url="http://h"))
    create = requests["Add a pet"][1]["request"]
    # JSON is preferred over multipart; the example holds required fields and defaults.
    assert create["body"]["mode"] == "raw"
    assert create["body"]["options"] == {"raw": {"language": "json"}}
    assert json.loads(create["body"]["raw"]) == {"name": "Rex", "kind": "dog", "born": "2025-01-01"}
    assert {"key": "Content-Type", "value": "application/json"} in create["header"]
    # The other fields are documented in the description.
    assert "- `tags` (array of string, optional)" in create["description"]
    assert "- `kind` (one of `cat`, `dog`, required)" in create["description"]

    photo = requests["Upload a photo"][1]["request"]
    assert photo["body"] == {
        "mode": "formdata",
        "formdata": [
            {"key": "file", "description": "(Required)", "disabled": False, "type": "file",
             "src": None},
            {"key": "caption", "description": "(Optional)", "disabled": True, "value": "me",
             "type": "text"},
        ],
    }  # fmt: skip
    # Postman writes the multipart Content-Type (with its boundary) itself.
    assert all(h["key"] != "Content-Type" for h in photo["header"])

    login = requests["Log in"][1]["request"]
    assert login["body"]["mode"] == "urlencoded"
    assert [(f["key"], f["value"], f["disabled"]) for f in login["body"]["urlencoded"]] == [
        ("user", "ann", False),
        ("remember", "true", True),
    ]
    assert {"key": "Content-Type", "value": "application/x-www-form-urlencoded"} in login["header"]


def test_auth_and_responses() -> None:
    requests = _requests(collection_from_openapi(DOCUMENT, name="Pets", base_url="http://h"))
    # security: [{}] needs no credential; the others inherit the collection's bearer auth.
    assert requests["Log in"][1]["request"]["auth"] == {"type": "noauth"}
    assert "auth" not in requests["Add a pet"][1]["request"]

    created = requests["Add a pet"][1]["response"]
    assert [(r["code"], r["status"], r["name"]) for r in created] == [
        (201, "Created", "201 Created")
    ]
    body = json.loads(created[0]["body"])
    # Response examples hold readOnly fields and leave writeOnly ones out.
    assert body["id"] == "3fa85f64-5717-4562-b3fc-2c963f66afa6" and "secret" not in body
    assert body["tags"] == ["string"] and body["weight"] == 0
    assert created[0]["header"] == [{"key": "Content-Type", "value": "application/json"}]
    assert created[0]["originalRequest"]["method"] == "POST"
    # "default" has no status code to show; a response without content has no body.
    assert [r["code"] for r in requests["List pets"][1]["response"]] == [200]
    assert requests["Upload a photo"][1]["response"][0]["body"] is None
    # A recursive schema stops at its first repetition.
    tree = json.loads(requests["The family tree"][1]["response"][0]["body"])
    assert tree == {"name": "string", "children": []}


def test_postman_id_is_stable_per_server_and_name() -> None:
    def ident(**kw: Any) -> str:
        return collection_from_openapi(DOCUMENT, **kw)["info"]["_postman_id"]  # type: ignore[no-any-return]

    assert ident(name="Pets", base_url="http://h") == ident(name="Pets", base_url="http://h")
    assert ident(name="Pets", base_url="http://h") != ident(name="Pets", base_url="http://other")
    assert ident(name="Pets", base_url="http://h") != ident(name="Cats", base_url="http://h")


def test_without_responses_and_empty_document(
    collection_validator: jsonschema.Draft7Validator,
) -> None:
    bare = collection_from_openapi(DOCUMENT, name="P", base_url="http://h", include_responses=False)
    assert all("response" not in item for _, item in _requests(bare).values())
    empty = collection_from_openapi({"openapi": "3.0.3"}, name="Empty", base_url="http://h/")
    assert_valid(collection_validator, empty)
    assert empty["item"] == []
    assert empty["variable"][0]["value"] == "http://h"
