"""The agent runtime's Python side that runs outside the server process.

* ``runtime_client.kernel``: Jupyter kernels behind one async interface (local or in a sandbox).
* ``runtime_client.notebook``: runs a ``python`` task's cells and streams their outputs as events.
* ``runtime_client.bridge``: serves a kernel inside a sandbox on a Unix socket.
* ``runtime_client.client`` / ``python -m runtime_client``: connects to a server as a remote
  runtime (``/ws/runtimes/``) and executes its ``python`` tasks on a local kernel.

Nothing here imports Django: it runs on users' machines and inside sandboxes.
"""
