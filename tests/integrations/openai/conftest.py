"""A live daphne serving the OpenAI-compatible API, a scripted model, and the agents the tests
use: ``chatty`` (llm, alice's team), ``quiet`` (llm, hidden from the OpenAI API), and bob's
``secret`` (private, another team) and ``helper`` (public, another team)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from sessions.runners.scripted_llm import ScriptedLLM
from tests.factories import make_agent, make_token, make_user
from tests.transport.conftest import DaphneServer, live_daphne


@dataclass
class Env:
    server: DaphneServer
    llm: ScriptedLLM
    token: str
    user: Any

    def client(self, token: str | None = None, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.server.url}/v1", api_key=token or self.token, max_retries=0,
            timeout=60, **kw,
        )  # fmt: skip

    def rest(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.server.url, headers=auth, timeout=60)


def llm_spec(llm: ScriptedLLM, **extra: Any) -> dict[str, Any]:
    return {"model": {"base_url": llm.base_url, "name": "scripted-1"},
            "system_prompt": "Be brief.", **extra}  # fmt: skip


@pytest.fixture
def oai_env() -> dict[str, Any]:
    """Extra settings (environment) of the test's daphne; override with
    ``@pytest.mark.parametrize("oai_env", [{...}])``."""
    return {}


@pytest.fixture
def oai(
    transactional_db: Any, tmp_path: Path, llm: ScriptedLLM, oai_env: dict[str, Any]
) -> Iterator[Env]:
    """A daphne of its own per test: it must be stopped before the tables are emptied (on
    PostgreSQL a TRUNCATE and a server still writing can deadlock)."""
    alice = make_user("alice")
    make_agent(alice, slug="chatty", name="Chatty", kind="llm", spec=llm_spec(llm),
               description="A chatty agent.")  # fmt: skip
    make_agent(alice, slug="quiet", kind="llm", spec=llm_spec(llm),
               integrations={"openai": False})  # fmt: skip
    bob = make_user("bob")
    make_agent(bob, slug="secret", kind="llm", spec=llm_spec(llm))
    make_agent(bob, slug="helper", kind="llm", spec=llm_spec(llm), is_public=True)
    token = make_token(alice)
    # The scripted model listens on loopback, which model endpoints may reach only when allowed.
    with live_daphne(
        tmp_path, STREAM_HEARTBEAT_S=1, LLM_ENDPOINT_ALLOWED_HOSTS="127.0.0.1", **oai_env
    ) as server:
        yield Env(server=server, llm=llm, token=token, user=alice)
