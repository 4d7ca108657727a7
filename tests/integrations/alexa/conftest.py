"""Fixtures of the Alexa tests: a local signing PKI, an HTTPS server serving its certificate
chains, settings that trust them (the allowlist and root CA file settings), and skills."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integrations.alexa.models import AlexaSkill
from integrations.alexa.services import alexa_skill_create
from tests import factories
from tests.integrations.alexa.pki import (
    CHAIN_PATH,
    ROGUE_CHAIN_PATH,
    ChainServer,
    Pki,
    alexa_request,
    signed_headers,
)

APP_ID = "amzn1.ask.skill.11111111-2222-3333-4444-555555555555"


@dataclass
class AlexaRig:
    pki: Pki
    server: ChainServer
    root_file: Path

    @property
    def chain_url(self) -> str:
        return self.server.url(CHAIN_PATH)

    @property
    def rogue_chain_url(self) -> str:
        return self.server.url(ROGUE_CHAIN_PATH)

    @property
    def env(self) -> dict[str, str]:
        """Settings (as environment variables) that make a server trust this rig."""
        return {
            "ALEXA_CERT_URL_ALLOWLIST": self.server.url("/echo.api/"),
            "ALEXA_TRUSTED_CA_FILE": str(self.root_file),
        }

    def signed(self, body: bytes, **overrides: Any) -> dict[str, str]:
        headers = signed_headers(body, self.pki.signing_key, self.chain_url)
        headers.update(overrides)
        return headers

    def request(self, request_type: str, **fields: Any) -> tuple[bytes, dict[str, str]]:
        """A body and its valid Alexa headers (``fields``: see ``alexa_request``)."""
        fields.setdefault("application_id", APP_ID)
        body = alexa_request(request_type, **fields)
        return body, self.signed(body)


@pytest.fixture(scope="session")
def alexa_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlexaRig]:
    workdir = tmp_path_factory.mktemp("alexa-pki")
    pki = Pki()
    files = {
        CHAIN_PATH: pki.chain,
        ROGUE_CHAIN_PATH: pki.rogue_chain,
        "/echo.api/garbage.pem": b"-----BEGIN CERTIFICATE-----\nnot one\n",
    }
    server = ChainServer(pki, files, workdir)
    try:
        yield AlexaRig(pki=pki, server=server, root_file=pki.write_root(workdir))
    finally:
        server.close()


@pytest.fixture
def alexa_settings(settings: Any, alexa_rig: AlexaRig) -> AlexaRig:
    """This process trusts the rig (production checks otherwise unchanged)."""
    settings.ALEXA_VERIFY_SIGNATURE = True
    settings.ALEXA_VERIFY_TIMESTAMP = True
    settings.ALEXA_CERT_URL_ALLOWLIST = [alexa_rig.server.url("/echo.api/")]
    settings.ALEXA_TRUSTED_CA_FILE = str(alexa_rig.root_file)
    return alexa_rig


def make_skill(owner: Any, agent: Any, **fields: Any) -> AlexaSkill:
    fields.setdefault("application_id", APP_ID)
    fields.setdefault("name", "Test skill")
    team = fields.pop("team", None) or agent.team
    return alexa_skill_create(owner=owner, team=team, agent=agent, **fields)


@pytest.fixture
def skill(user: Any) -> AlexaSkill:
    """``user``'s skill on a command agent of ``user``'s team."""
    agent = factories.make_agent(user, slug="talker", spec={"command": "echo hi"})
    return make_skill(user, agent, launch_speech="Welcome to the talker.")
