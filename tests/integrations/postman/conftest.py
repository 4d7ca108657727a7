"""Fixtures of the Postman tests: the official collection JSON schema (vendored, see
tests/fixtures/postman/README.md) and Postman's SDK (npm ``postman-collection``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "tests" / "fixtures" / "postman" / "collection-v2.1.0.json"
RESOLVER = Path(__file__).with_name("resolve_requests.js")


@pytest.fixture(scope="session")
def collection_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def assert_valid(validator: jsonschema.Draft7Validator, collection: dict[str, Any]) -> None:
    """``collection`` is valid against the v2.1.0 schema (else the first errors, with paths)."""
    errors = sorted(validator.iter_errors(collection), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:5]
    )


@pytest.fixture(scope="session")
def postman_sdk() -> Path:
    """The project's ``node_modules`` holding postman-collection (a devDependency in
    package.json, installed by ``make setup``); a missing one is a failed set-up, not a skip."""
    own = ROOT / "node_modules"
    if not (own / "postman-collection").is_dir():
        pytest.fail("node_modules/postman-collection is missing: run `make setup` (npm ci)")
    return own


def resolve_with_sdk(
    node_modules: Path, collection: dict[str, Any], tmp_path: Path, **overrides: Any
) -> dict[str, Any]:
    """What Postman would send for each request of ``collection`` (resolve_requests.js)."""
    path = tmp_path / "collection.json"
    path.write_text(json.dumps(collection))
    result = subprocess.run(
        ["node", str(RESOLVER), str(path), json.dumps(overrides)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]
