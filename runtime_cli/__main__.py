"""``python -m runtime_cli``."""

import sys

from runtime_cli.main import main

sys.exit(main())
