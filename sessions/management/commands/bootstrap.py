from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Scope
from accounts.services import api_key_create
from sandboxes.registry import get_backend
from sessions.demo import seed_demo_agents


class Command(BaseCommand):
    help = (
        "First-start set-up of the embedded default: a local admin with an API key, the demo "
        "agents, and a summary of how to connect. Idempotent."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, host: str, port: str, **options: Any) -> None:
        User = get_user_model()
        password_file = settings.VAR_DIR / "admin-password"
        admin = User.objects.filter(username="admin").first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = User.objects.create_superuser("admin", password=password)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        key_file = settings.VAR_DIR / "admin-api-key"
        if not key_file.exists():
            # Keys are hashed at rest: the first start keeps the demo key in a 0600 file, like
            # the admin password, so later starts can print it again.
            _, key = api_key_create(user=admin, team=None, name="bootstrap", scopes=[Scope.ADMIN])
            key_file.write_text(key + "\n")
            key_file.chmod(0o600)
        key = key_file.read_text().strip()
        if settings.SEED_DEMO:
            seed_demo_agents(owner=admin)
        caps = get_backend().capabilities()
        password = password_file.read_text().strip() if password_file.exists() else "(set by you)"
        base = f"http://{host}:{port}"
        lines = [
            "",
            "Agent runtime server",
            f"  Console        {base}/console/   (user: admin, password: {password})",
            f"  API            {base}/api/v1/",
            f"  Swagger UI     {base}/api/docs/",
            f"  ReDoc          {base}/api/redoc/",
            f"  Admin          {base}/admin/   (user: admin, password: {password})",
            f"  Health         {base}/health",
            f"  API key        {key}",
            f"  try:           curl -H 'Authorization: Bearer {key}' {base}/api/v1/agents",
            f"  sandbox        {caps.backend}/{caps.tier}"
            + ("" if caps.isolated else "  ** UNISOLATED: commands run without a sandbox **")
            + ("" if caps.available else f"  ** UNAVAILABLE: {caps.reason} **"),
            "",
        ]
        self.stdout.write("\n".join(lines))
