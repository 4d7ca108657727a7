"""The REST API of sessions, tasks, events and workspaces (``/api/v1/``, DESIGN §7).

One ``APIView`` per operation, named ``<Entity><Action>Api``, with nested input/output
serializers; writes go through ``sessions.services``, reads through ``sessions.selectors``
(HackSoft Django-Styleguide). Views that share a URL are joined by :func:`routing.route`.
Modules are split by resource: ``agents``, ``sessions``, ``tasks``, ``events``, ``workspace``,
``oneshot``.
"""
