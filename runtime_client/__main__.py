"""``python -m runtime_client``: see ``runtime_client.cli``."""

from __future__ import annotations

import sys

from runtime_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
