"""Executors decide when claimed tasks run. One implementation, two placements:

* ``inline`` (embedded default): the :class:`Executor` lives in the server process, on the
  server's event loop, and is started by the ASGI application.
* ``worker``: the same class runs in ``manage.py run_worker`` processes; the web process only
  publishes notifications.

Either way, a new task wakes an executor through the channel layer (``runtime.executor``
group), never by polling; a slow sweep (every ``TASK_LEASE_S / 2``) only recovers lost
notifications and tasks whose worker died.
"""

from __future__ import annotations

from sessions.executors.inline import Executor, get_executor

__all__ = ("Executor", "get_executor")
