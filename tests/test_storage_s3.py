"""Workspace snapshots and artifacts on an S3-compatible store (issue 6 item 3), end to end.

A real S3 API is served by moto's server mode in a subprocess for this module; the tests switch
``STORAGES["default"]`` to django-storages' ``S3Storage`` built by the project's own settings
code (``runtime_project.settings._storages`` from ``STORAGE_S3_*``), then drive the REST
endpoints: upload files, snapshot, check the object landed in the bucket (and nothing under
MEDIA_ROOT), delete the files, restore, check they are back. An unreachable store must answer
503 ``storage_unavailable`` in the error envelope and leave the workspace alone.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.files.storage import FileSystemStorage, default_storage, storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient
from storages.backends.s3 import S3Storage

from runtime_project import settings as project_settings
from sessions.models import Artifact, Session
from sessions.services.events import event_append
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
PREFIX = "runtime/test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server (a subprocess, stopped after the module).

    A subprocess rather than ``ThreadedMotoServer``: nothing of moto is imported into the test
    process, so boto3 here talks to it over real HTTP exactly as it would to MinIO or AWS.
    """
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **KEYS)


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket for each test."""
    name = f"snapshots-{uuid.uuid4().hex[:12]}"
    _client(moto_endpoint).create_bucket(Bucket=name)
    return name


def _s3_storages(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str) -> dict[str, Any]:
    """``STORAGES`` as the settings build it from the ``STORAGE_S3_*`` environment."""
    for name, value in {
        "STORAGE_S3_BUCKET": bucket,
        "STORAGE_S3_ENDPOINT_URL": endpoint,
        "STORAGE_S3_REGION": "us-east-1",
        "STORAGE_S3_ACCESS_KEY_ID": KEYS["aws_access_key_id"],
        "STORAGE_S3_SECRET_ACCESS_KEY": KEYS["aws_secret_access_key"],
        "STORAGE_S3_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(name, value)
    built = project_settings._storages()
    assert built["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    return built


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.WORKSPACE_ROOT = tmp_path / "workspaces"
    settings.WORKSPACE_ROOT.mkdir()
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def s3(
    settings: Any, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, bucket: str, media: Path
) -> str:
    """Default storage on the moto bucket for this test; returns the bucket name."""
    settings.STORAGES = _s3_storages(monkeypatch, moto_endpoint, bucket)
    # Django's setting_changed handler (django.test.signals.storages_changed) dropped the cached
    # backends; the lazy default_storage must now be the S3 one.
    assert isinstance(storages["default"], S3Storage)
    assert default_storage.bucket_name == bucket  # type: ignore[attr-defined]
    return bucket


def _keys(endpoint: str, bucket: str) -> dict[str, int]:
    listed = _client(endpoint).list_objects_v2(Bucket=bucket)
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_the_storage_handler_follows_the_setting(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, bucket: str
) -> None:
    assert isinstance(storages["default"], FileSystemStorage)
    with override_settings(STORAGES=_s3_storages(monkeypatch, moto_endpoint, bucket)):
        assert isinstance(storages["default"], S3Storage)
        assert isinstance(default_storage, S3Storage)  # the lazy proxy resolves to it
        options = storages["default"]
        assert (options.location, options.file_overwrite, options.default_acl) == (
            PREFIX,
            False,
            None,
        )
        assert options.querystring_auth and options.querystring_expire == 300
    assert isinstance(storages["default"], FileSystemStorage)
    assert isinstance(default_storage, FileSystemStorage)
    # The static files storage is untouched by the S3 switch.
    assert project_settings.STORAGES["staticfiles"] == {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
    }


def test_snapshot_goes_to_the_bucket_and_restores_from_it(
    api_client: APIClient, session: Session, s3: str, moto_endpoint: str, media: Path
) -> None:
    files = f"{API}/sessions/{session.uuid}/workspace/files"
    snapshots = f"{API}/sessions/{session.uuid}/sandbox/snapshots"
    uploaded = api_client.post(
        files,
        {
            "files": [
                SimpleUploadedFile("main.py", b"print('hi')\n"),
                SimpleUploadedFile("data.bin", bytes(range(256)) * 64),
            ],
            "path": "src",
        },
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()

    created = api_client.post(snapshots)

    assert created.status_code == 201, created.json()
    name = created.json()["name"]
    key = f"{PREFIX}/snapshots/{session.uuid}/{name}.tar.gz"
    assert _keys(moto_endpoint, s3) == {key: created.json()["size"]}
    assert _files_under(media) == []  # nothing went to the local MEDIA_ROOT
    body = _client(moto_endpoint).get_object(Bucket=s3, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == ["src", "src/data.bin", "src/main.py"]
    listed = api_client.get(snapshots)
    assert listed.status_code == 200, listed.json()
    assert [(s["name"], s["size"]) for s in listed.json()] == [(name, len(body))]
    assert listed.json()[0]["created_at"]  # S3 has no creation time: last-modified stands in

    assert api_client.delete(f"{files}/src", QUERY_STRING="recursive=true").status_code == 204
    assert api_client.get(files).json()["entries"] == []

    restored = api_client.post(f"{snapshots}/{name}/restore")

    assert restored.status_code == 200, restored.json()
    assert restored.json() == {"files": 3}
    main: Any = api_client.get(f"{files}/src/main.py")
    assert b"".join(main.streaming_content) == b"print('hi')\n"
    data: Any = api_client.get(f"{files}/src/data.bin")
    assert b"".join(data.streaming_content) == bytes(range(256)) * 64
    assert _files_under(media) == []
    missing = api_client.post(f"{snapshots}/20260101T000000Z-abcdef/restore")
    error_of(missing, 404, "not_found")


def test_large_event_payloads_become_artifacts_in_the_bucket(
    session: Session, s3: str, moto_endpoint: str, media: Path
) -> None:
    event = event_append(session=session, type="tool.output", data={"text": "x" * 100_000})

    artifact = Artifact.objects.get(uuid=event.data["artifact"]["id"])
    key = f"{PREFIX}/{artifact.file.name}"
    assert key.startswith(f"{PREFIX}/artifacts/{session.uuid}/{artifact.uuid}/")
    assert _keys(moto_endpoint, s3) == {key: artifact.size}
    with artifact.file.open("rb") as fh:
        assert b'"x' in fh.read()
    assert _files_under(media) == []


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound then released): connections are refused."""
    return _free_port()


def test_an_unreachable_store_is_a_503_and_the_workspace_is_left_alone(
    api_client: APIClient,
    session: Session,
    s3: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    closed_port: int,
) -> None:
    files = f"{API}/sessions/{session.uuid}/workspace/files"
    snapshots = f"{API}/sessions/{session.uuid}/sandbox/snapshots"
    api_client.post(files, {"files": [SimpleUploadedFile("keep.txt", b"v1")]}, format="multipart")
    name = api_client.post(snapshots).json()["name"]  # a real snapshot, made while S3 is up
    api_client.post(files, {"files": [SimpleUploadedFile("keep.txt", b"v2")]}, format="multipart")
    settings.STORAGES = _s3_storages(monkeypatch, f"http://127.0.0.1:{closed_port}", s3)

    started = time.monotonic()
    for response in (
        api_client.get(snapshots),
        api_client.post(snapshots),
        api_client.post(f"{snapshots}/{name}/restore"),
    ):
        error = error_of(response, 503, "storage_unavailable")
        assert error["details"]["reason"] == "EndpointConnectionError", error
        assert str(closed_port) not in response.content.decode()  # no endpoint, no traceback
    assert time.monotonic() - started < 30  # bounded retries and timeouts, not botocore's 60 s
    assert (session.workspace_path / "keep.txt").read_bytes() == b"v2"  # not emptied


def test_a_missing_bucket_is_a_503_naming_the_s3_error(
    api_client: APIClient,
    session: Session,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    media: Path,
) -> None:
    settings.STORAGES = _s3_storages(monkeypatch, moto_endpoint, "no-such-bucket-here")

    listed = api_client.get(f"{API}/sessions/{session.uuid}/sandbox/snapshots")

    error = error_of(listed, 503, "storage_unavailable")
    assert error["details"] == {"operation": "snapshot_list", "reason": "NoSuchBucket"}


def test_a_download_failing_midway_leaves_the_workspace_as_it_was(
    api_client: APIClient, session: Session, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ReadTimeoutError
    from storages.backends.s3 import S3File

    files = f"{API}/sessions/{session.uuid}/workspace/files"
    snapshots = f"{API}/sessions/{session.uuid}/sandbox/snapshots"
    api_client.post(files, {"files": [SimpleUploadedFile("keep.txt", b"v1")]}, format="multipart")
    name = api_client.post(snapshots).json()["name"]
    api_client.post(files, {"files": [SimpleUploadedFile("keep.txt", b"v2")]}, format="multipart")

    def broken_download(self: S3File) -> Any:  # the object exists (HEAD passed), the GET fails
        raise ReadTimeoutError(endpoint_url="http://s3.invalid")

    monkeypatch.setattr(S3File, "file", property(broken_download))

    response = api_client.post(f"{snapshots}/{name}/restore")

    error = error_of(response, 503, "storage_unavailable")
    assert error["details"] == {"operation": "snapshot_restore", "reason": "ReadTimeoutError"}
    assert (session.workspace_path / "keep.txt").read_bytes() == b"v2"
