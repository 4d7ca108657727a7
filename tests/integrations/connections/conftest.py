from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.transport.conftest import DaphneServer, live_daphne

# The provider (this server's /o/ endpoints) and the protected resources are on loopback:
# the token endpoint may be reached through OAUTH_CONNECTIONS_ALLOWED_HOSTS, the resources
# through OUTBOUND_ALLOWED_HOSTS, the scripted model through LLM_ENDPOINT_ALLOWED_HOSTS.
LOOPBACK = {
    "OAUTH_CONNECTIONS_ALLOWED_HOSTS": "127.0.0.1",
    "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
    "LLM_ENDPOINT_ALLOWED_HOSTS": "127.0.0.1",
}


@pytest.fixture(scope="package")  # stopped with the package: its executor claims queued tasks
def _shared_daphne(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[DaphneServer]:
    # One server for every test here (it keeps no state of its own between them: each test's
    # rows are flushed by ``transactional_db``); starting one costs seconds on a busy machine.
    with (
        django_db_blocker.unblock(),
        live_daphne(tmp_path_factory.mktemp("daphne"), **LOOPBACK) as live,
    ):
        yield live


@pytest.fixture
def server(transactional_db: Any, _shared_daphne: DaphneServer) -> DaphneServer:
    """One real daphne: the OAuth2 provider, the connections client and the task runner."""
    return _shared_daphne
