"""The live-sandbox quota of a team (``TEAM_MAX_SANDBOXES``, ``Team.max_sandboxes``;
docs/limits.md).

Live sandboxes are counted where they live, in the backend (``list_sandboxes`` by the ``team``
label that ``sandbox_spec`` puts on every sandbox): the database does not know when a sandbox
stopped itself after its idle timeout. A session's own sandbox never counts against its restart.
With the ``local`` backend the count is per machine (each machine runs its own sandboxes);
``docker`` counts what its engine runs.

Two sessions of a team starting sandboxes at the same moment could both see room for one; the
count and the start therefore run under a per-team lock in Django's default cache (Redis when
``REDIS_URL`` is set, so across processes), held for one start at most ``START_LOCK_TTL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgiref.sync import sync_to_async
from django.core.cache import cache

from accounts.limits import max_sandboxes
from accounts.models import Team
from runtime_project.exceptions import TooManyRequests
from sandboxes.base import SandboxBackend
from sessions.models import Session

logger = logging.getLogger(__name__)

# Retry-After of team_sandbox_limit: sandboxes end by an explicit stop or an idle timeout
# (minutes), so there is no point in polling every second.
SANDBOX_LIMIT_RETRY_AFTER_S = 30
# The per-team start lock expires by itself after this long (a starter that died holding it).
START_LOCK_TTL_S = 120
_POLL_S = 0.05


@asynccontextmanager
async def sandbox_start_slot(*, session: Session, backend: SandboxBackend) -> AsyncIterator[None]:
    """Hold while starting ``session``'s sandbox: checks the team's quota under the team's
    start lock, which is released when the block ends (the new sandbox then counts).

    Raises:
        TooManyRequests: ``team_sandbox_limit`` (429, ``Retry-After``): the team has its limit
            of live sandboxes; ``details``: ``{"limit", "live", "retry_after_s"}``.
    """
    team = await Team.objects.filter(pk=session.team_id).afirst()
    limit = max_sandboxes(team)
    if team is None or limit is None:
        yield
        return
    async with _team_lock(f"limits:sandbox-start:{team.uuid}"):
        running = await backend.list_sandboxes({"team": str(team.uuid)})
        live = sum(1 for info in running if info.sandbox_id != str(session.uuid))
        if live >= limit:
            raise TooManyRequests(
                f"The team has {live} live sandboxes, its limit; stop one or retry later.",
                code="team_sandbox_limit",
                retry_after_s=SANDBOX_LIMIT_RETRY_AFTER_S,
                details={"limit": limit, "live": live},
            )
        yield


@asynccontextmanager
async def _team_lock(key: str) -> AsyncIterator[None]:
    """A mutex in the default cache (``add`` is atomic: Redis ``SET NX``), waited for at most
    its TTL. If the cache is unreachable the start goes ahead unlocked (logged)."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + START_LOCK_TTL_S
    held = False
    try:
        while not (held := await cache.aadd(key, token, START_LOCK_TTL_S)):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(_POLL_S)
    except Exception:
        logger.warning("sandbox start lock %s not taken: the cache failed", key, exc_info=True)
    try:
        yield
    finally:
        if held:
            await sync_to_async(_release)(key, token)


def _release(key: str, token: str) -> None:
    try:
        if cache.get(key) == token:  # not one that expired and was taken by another starter
            cache.delete(key)
    except Exception:
        logger.warning("sandbox start lock %s not released: the cache failed", key, exc_info=True)
