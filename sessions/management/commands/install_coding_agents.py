"""Install the pinned coding-agent CLIs sandboxes run (``spec.architecture``; issue 12).

``manage.py install_coding_agents`` installs every architecture's CLI; name some to install
only those (``manage.py install_coding_agents opencode codex``); ``--list`` shows what is
installed. Idempotent: an installed CLI is left alone. Where and how:
``sessions/runners/architectures/install.py``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime_project.exceptions import ApplicationError
from sessions.runners.architectures import ARCHITECTURES
from sessions.runners.architectures.install import ensure_installed, executable


class Command(BaseCommand):
    help = "Install the pinned coding-agent CLIs (OpenCode, Codex CLI, Aider, Claude Code)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help=f"of {', '.join(ARCHITECTURES)}")
        parser.add_argument("--list", action="store_true", help="show what is installed")

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["names"] or list(ARCHITECTURES)
        unknown = [n for n in names if n not in ARCHITECTURES]
        if unknown:
            raise CommandError(f"unknown architecture(s): {', '.join(unknown)}")
        for name in names:
            architecture = ARCHITECTURES[name]()
            spec = architecture.package.spec
            if options["list"]:
                found = executable(architecture)
                self.stdout.write(f"{name}: {spec} {'installed: ' + str(found) if found else '-'}")
                continue
            try:
                path = ensure_installed(architecture, log=self.stdout.write, allow_install=True)
            except ApplicationError as exc:
                detail = exc.details.get("output", "")
                raise CommandError(f"{name}: {exc.message} {detail}") from exc
            self.stdout.write(f"{name}: {spec} at {path}")
