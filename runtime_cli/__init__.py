"""``runtime``: a command-line client of the server's REST and WebSocket API (docs/cli.md).

Run it as ``bin/runtime …`` or ``python -m runtime_cli …``. It is a plain HTTP client (httpx,
websockets, rich) and never imports Django, so it works from any machine that can reach the
server. Not to be confused with ``runtime_client``, which attaches a machine to a session as a
remote runtime.
"""
