"""OpenAPI 3.x → Postman Collection v2.1 (a pure function; no Django, no I/O).

The result imports into Postman (*Import → File/Link*) and runs with Newman: one folder per tag
(an operation's first tag; untagged operations sit at the top), one request per operation, named
by its ``summary``. Each request carries:

- ``url``: ``{{baseUrl}}`` + the path, path parameters as ``:name`` segments with their
  descriptions and example values, query parameters listed (optional ones ``disabled``, so they
  are one click away but not sent);
- ``header``: ``Accept`` and ``Content-Type`` from the operation's media types, and its header
  parameters (optional ones disabled);
- ``body``: a JSON example built from the request schema (``integrations.postman.examples``),
  or form fields for ``multipart/form-data`` / ``x-www-form-urlencoded``, or a file;
- ``response``: one saved example per documented response (status, headers, JSON body).

Authentication is set once on the collection: bearer ``{{apiKey}}``; operations whose OpenAPI
``security`` needs no credential (e.g. ``[{}]``) get ``noauth``. The collection variables are
``baseUrl`` (the server's URL, overridable in an environment) and ``apiKey`` (empty).

This follows what Postman's own converter (openapi-to-postmanv2) produces with its defaults,
except that examples are values, not ``<string>`` placeholders, so a request can be sent as is.
"""

from __future__ import annotations

import json
import re
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import urljoin

from integrations.postman.examples import Document, text

SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Headers OpenAPI says to ignore as parameters: they come from the media types and the auth.
RESERVED_HEADERS = {"accept", "content-type", "authorization"}
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


def collection_from_openapi(
    schema: dict[str, Any], *, name: str, base_url: str, include_responses: bool = True
) -> dict[str, Any]:
    """A Postman Collection v2.1 document for the OpenAPI document ``schema``.

    Args:
        schema: an OpenAPI 3.0 or 3.1 document as a dict (drf-spectacular's output, or any
            document whose ``$ref``s point inside itself).
        name: the collection's name, as Postman lists it.
        base_url: the absolute URL of the server (``https://host``); the value of the
            ``baseUrl`` variable, joined with the document's first ``servers`` URL if it has one.
        include_responses: attach an example response per documented status.

    Returns:
        A JSON-serialisable dict valid against the v2.1.0 collection schema. ``info._postman_id``
        is derived from ``name`` and ``base_url``, so downloading again and re-importing replaces
        the collection instead of adding a copy.
    """
    doc = Document(schema)
    info = schema.get("info") or {}
    tag_descriptions = {
        t.get("name"): t.get("description", "") for t in schema.get("tags") or [] if t.get("name")
    }
    folders: dict[str, list[dict[str, Any]]] = {str(t): [] for t in tag_descriptions}
    top: list[dict[str, Any]] = []
    for path, path_item in (schema.get("paths") or {}).items():
        path_item = doc.resolve(path_item)
        if not isinstance(path_item, dict):
            continue
        for method in METHODS:
            operation = path_item.get(method)
            if not isinstance(operation, dict):
                continue
            item = _item(doc, path, method, path_item, operation, include_responses)
            tags = operation.get("tags") or []
            if tags:
                folders.setdefault(str(tags[0]), []).append(item)
            else:
                top.append(item)
    items: list[dict[str, Any]] = [
        {"name": tag, "description": tag_descriptions.get(tag) or "", "item": entries}
        for tag, entries in folders.items()
        if entries
    ]
    items.extend(top)
    collection_info: dict[str, Any] = {
        "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base_url}#postman:{name}")),
        "name": name,
        "description": _collection_description(info),
        "schema": SCHEMA_URL,
    }
    if info.get("version"):
        collection_info["version"] = str(info["version"])
    return {
        "info": collection_info,
        "item": items,
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}],
        },
        "variable": [
            {"key": "baseUrl", "value": _base_url(schema, base_url), "type": "string"},
            {
                "key": "apiKey",
                "value": "",
                "type": "string",
                "description": "An API key or OAuth2 access token, sent as `Authorization: "
                "Bearer {{apiKey}}`. Set it here or in an environment.",
            },
        ],
    }


def _collection_description(info: dict[str, Any]) -> str:
    parts = [str(info.get("description") or "").strip()]
    if info.get("title"):
        parts.insert(0, f"**{info['title']}** {info.get('version') or ''}".strip())
    parts.append(
        "Set the `apiKey` variable (collection or environment) to your API key; `baseUrl` is "
        "the server this collection was downloaded from."
    )
    return "\n\n".join(p for p in parts if p)


def _base_url(schema: dict[str, Any], base_url: str) -> str:
    """``base_url`` joined with the document's first server URL (its variables at their
    defaults): ``https://host`` + ``/api/agents/x`` → ``https://host/api/agents/x``."""
    servers = schema.get("servers") or []
    server = servers[0] if servers and isinstance(servers[0], dict) else {}
    url = str(server.get("url") or "")
    for key, variable in (server.get("variables") or {}).items():
        url = url.replace("{" + key + "}", str((variable or {}).get("default", "")))
    if not url:
        return base_url.rstrip("/")
    return urljoin(base_url.rstrip("/") + "/", url).rstrip("/")


def _item(
    doc: Document,
    path: str,
    method: str,
    path_item: dict[str, Any],
    operation: dict[str, Any],
    include_responses: bool,
) -> dict[str, Any]:
    parameters = _parameters(doc, path_item, operation)
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": _headers(doc, operation, parameters),
        "url": _url(doc, path, parameters),
        "description": "\n\n".join(
            filter(None, [_description(operation), _fields(doc, operation)])
        ),
    }
    body = _body(doc, operation)
    if body is not None:
        request["body"] = body
    if _anonymous(doc, operation):
        request["auth"] = {"type": "noauth"}
    item: dict[str, Any] = {
        "name": str(
            operation.get("summary") or operation.get("operationId") or f"{method.upper()} {path}"
        ),
        "request": request,
    }
    if include_responses:
        item["response"] = _responses(doc, operation, request)
    return item


def _description(operation: dict[str, Any]) -> str:
    parts = [str(operation.get("description") or operation.get("summary") or "")]
    if operation.get("deprecated"):
        parts.append("**Deprecated.**")
    if operation.get("operationId"):
        parts.append(f"Operation `{operation['operationId']}`.")
    return "\n\n".join(p for p in parts if p)


def _fields(doc: Document, operation: dict[str, Any]) -> str:
    """A markdown list of a JSON body's top-level fields: the example body holds only the
    required ones (and those with defaults), so this is where a reader finds the others."""
    media_type = _request_media_type(doc, operation)
    if media_type is None or not _is_json(media_type):
        return ""
    body = doc.resolve(operation.get("requestBody")) or {}
    media = doc.resolve(body["content"][media_type]) or {}
    props, required = doc.properties(media.get("schema"))
    lines = []
    for key, prop in props.items():
        if prop.get("readOnly"):
            continue
        need = "required" if key in required else "optional"
        about = " ".join(str(prop.get("description") or "").split())
        lines.append(
            f"- `{key}` ({_type_label(doc, prop)}, {need})" + (f": {about}" if about else "")
        )
    return "Body fields:\n\n" + "\n".join(lines) if lines else ""


def _type_label(doc: Document, prop: Any, depth: int = 0) -> str:
    schema = doc.resolve(prop) or {}
    if schema.get("allOf") and not schema.get("type"):  # drf-spectacular's wrapped enums
        schema = {**(doc.resolve(schema["allOf"][0]) or {}), **schema}
    values = [v for v in schema.get("enum") or [] if v is not None]
    if values:
        return "one of " + ", ".join(f"`{v}`" for v in values)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "/".join(k for k in kind if k != "null") or "null"
    if kind == "array" and depth < 3:
        return f"array of {_type_label(doc, schema.get('items'), depth + 1)}"
    if not kind:
        return "object" if "properties" in schema or "additionalProperties" in schema else "any"
    return f"{schema['format']} {kind}" if schema.get("format") else str(kind)


def _parameters(
    doc: Document, path_item: dict[str, Any], operation: dict[str, Any]
) -> list[dict[str, Any]]:
    """Path-level parameters overridden by the operation's (same ``name`` and ``in``)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*(path_item.get("parameters") or []), *(operation.get("parameters") or [])]:
        param = doc.resolve(raw)
        if isinstance(param, dict) and param.get("name") and param.get("in"):
            merged[(str(param["in"]), str(param["name"]))] = param
    return list(merged.values())


def _param_value(doc: Document, param: dict[str, Any], placeholder: bool = True) -> Any:
    """The parameter's example; without one, a placeholder of its type, or ``None`` when
    ``placeholder`` is false (path variables: an empty value asks to be filled in, where a
    made-up id would be sent and answer 404)."""
    if "example" in param:
        return param["example"]
    examples = param.get("examples")
    if isinstance(examples, dict) and examples:
        first = doc.resolve(next(iter(examples.values())))
        if isinstance(first, dict) and "value" in first:
            return first["value"]
    schema = param.get("schema")
    if schema is None and isinstance(param.get("content"), dict) and param["content"]:
        schema = next(iter(param["content"].values())).get("schema")
    if not placeholder:
        return doc.given(schema)
    return doc.example(schema)


def _url(doc: Document, path: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {p["name"]: p for p in parameters if p["in"] == "path"}
    segments: list[str] = []
    variables: list[dict[str, Any]] = []
    for segment in path.strip("/").split("/"):
        whole = _TEMPLATE.fullmatch(segment)
        if whole:
            segments.append(":" + whole.group(1))
        else:  # a template inside a segment (``{name}.json``) is a Postman variable
            segments.append(_TEMPLATE.sub(r"{{\1}}", segment))
        for key in _TEMPLATE.findall(segment):
            param = by_name.get(key, {"name": key})
            variables.append(
                {
                    "key": key,
                    "value": text(_param_value(doc, param, placeholder=False)),
                    "description": _param_description(param, required=True),
                }
            )
    query: list[dict[str, Any]] = []
    for param in parameters:
        if param["in"] != "query":
            continue
        value = _param_value(doc, param)
        for one in value if isinstance(value, list) and value else [value]:
            query.append(
                {
                    "key": param["name"],
                    "value": text(one),
                    "description": _param_description(param),
                    "disabled": not param.get("required", False),
                }
            )
    raw = "{{baseUrl}}/" + "/".join(segments)
    sent = [q for q in query if not q["disabled"]]
    if sent:
        raw += "?" + "&".join(f"{q['key']}={q['value']}" for q in sent)
    url: dict[str, Any] = {"raw": raw, "host": ["{{baseUrl}}"], "path": segments}
    if query:
        url["query"] = query
    if variables:
        url["variable"] = variables
    return url


def _param_description(param: dict[str, Any], required: bool | None = None) -> str:
    required = bool(param.get("required")) if required is None else required
    label = "(Required)" if required else "(Optional)"
    text_ = str(param.get("description") or "").strip()
    return f"{label} {text_}".strip()


def _headers(
    doc: Document, operation: dict[str, Any], parameters: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    headers: list[dict[str, Any]] = []
    content_type = _request_media_type(doc, operation)
    if content_type and content_type not in ("multipart/form-data",):
        # multipart: Postman writes the Content-Type itself, with the boundary.
        headers.append({"key": "Content-Type", "value": content_type})
    accept = _accept(doc, operation)
    if accept:
        headers.append({"key": "Accept", "value": accept})
    for param in parameters:
        if param["in"] != "header" or str(param["name"]).lower() in RESERVED_HEADERS:
            continue
        headers.append(
            {
                "key": param["name"],
                "value": text(_param_value(doc, param)),
                "description": _param_description(param),
                "disabled": not param.get("required", False),
            }
        )
    return headers


def _accept(doc: Document, operation: dict[str, Any]) -> str | None:
    """The media type of the first success response (JSON preferred)."""
    for status, response in (operation.get("responses") or {}).items():
        if not str(status).startswith("2"):
            continue
        content = (doc.resolve(response) or {}).get("content") or {}
        if content:
            return _pick_json(content) or next(iter(content))
    return None


def _pick_json(content: dict[str, Any]) -> str | None:
    return next((t for t in content if _is_json(t)), None)


def _is_json(media_type: str) -> bool:
    base = media_type.split(";")[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def _request_media_type(doc: Document, operation: dict[str, Any]) -> str | None:
    body = doc.resolve(operation.get("requestBody")) or {}
    content = body.get("content") or {}
    if not content:
        return None
    # drf-spectacular lists JSON, form and multipart for one serializer: JSON is the one to show.
    for preferred in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if preferred in content and not _pick_json(content):
            return preferred
    return _pick_json(content) or next(iter(content))


def _media_example(doc: Document, media: dict[str, Any], direction: Any) -> Any:
    if "example" in media:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, dict) and examples:
        first = doc.resolve(next(iter(examples.values())))
        if isinstance(first, dict) and "value" in first:
            return first["value"]
    return doc.example(media.get("schema"), direction)


def _body(doc: Document, operation: dict[str, Any]) -> dict[str, Any] | None:
    media_type = _request_media_type(doc, operation)
    if media_type is None:
        return None
    body = doc.resolve(operation.get("requestBody")) or {}
    media = doc.resolve(body["content"][media_type]) or {}
    if _is_json(media_type):
        example = _media_example(doc, media, "request")
        return {
            "mode": "raw",
            "raw": json.dumps({} if example is None else example, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return _form_body(doc, media, multipart=media_type == "multipart/form-data")
    if media_type.startswith("text/"):
        return {"mode": "raw", "raw": text(_media_example(doc, media, "request"))}
    return {"mode": "file", "file": {"src": None}}


def _form_body(doc: Document, media: dict[str, Any], *, multipart: bool) -> dict[str, Any]:
    props, required = doc.properties(media.get("schema"))
    fields: list[dict[str, Any]] = []
    for key, prop in props.items():
        if prop.get("readOnly"):
            continue
        field: dict[str, Any] = {
            "key": key,
            "description": _param_description(
                {"description": prop.get("description")}, required=key in required
            ),
            "disabled": key not in required,
        }
        item_schema = doc.resolve(prop.get("items")) if prop.get("type") == "array" else prop
        is_file = (item_schema or {}).get("format") == "binary" or "contentMediaType" in (
            item_schema or {}
        )
        if multipart and is_file:
            field.update(type="file", src=[] if item_schema is not prop else None)
        else:
            field.update(value=text(doc.example(prop)))
            if multipart:
                field["type"] = "text"
        fields.append(field)
    mode = "formdata" if multipart else "urlencoded"
    return {"mode": mode, mode: fields}


def _anonymous(doc: Document, operation: dict[str, Any]) -> bool:
    """The operation needs no credential: ``security: []`` or only empty requirements."""
    security = operation.get("security", doc.document.get("security"))
    if security is None:
        return False
    return all(not requirement for requirement in security)


def _responses(
    doc: Document, operation: dict[str, Any], request: dict[str, Any]
) -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = []
    for status, raw in (operation.get("responses") or {}).items():
        if not str(status).isdigit():  # "default", "2XX": no single status to show
            continue
        code = int(status)
        response = doc.resolve(raw) or {}
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = ""
        example: dict[str, Any] = {
            "name": str(response.get("description") or f"{code} {reason}").strip(),
            "originalRequest": request,
            "status": reason,
            "code": code,
            "header": [],
            "body": None,
        }
        content = response.get("content") or {}
        media_type = _pick_json(content) or next(iter(content), None)
        if media_type is not None:
            example["header"] = [{"key": "Content-Type", "value": media_type}]
            if _is_json(media_type):
                value = _media_example(doc, doc.resolve(content[media_type]) or {}, "response")
                example["body"] = json.dumps(value, indent=2)
        examples.append(example)
    return examples
