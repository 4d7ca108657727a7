from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from sandboxes.registry import get_backend
from sessions.demo import seed_demo_agents


class Command(BaseCommand):
    help = (
        "First-start set-up of the embedded default: a local admin with an API token, the demo "
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
        token, _ = Token.objects.get_or_create(user=admin)
        if settings.SEED_DEMO:
            seed_demo_agents(owner=admin)
        caps = get_backend().capabilities()
        password = password_file.read_text().strip() if password_file.exists() else "(set by you)"
        base = f"http://{host}:{port}"
        lines = [
            "",
            "Agent runtime server",
            f"  API            {base}/api/v1/",
            f"  Swagger UI     {base}/api/docs/",
            f"  ReDoc          {base}/api/redoc/",
            f"  Admin          {base}/admin/   (user: admin, password: {password})",
            f"  Health         {base}/health",
            f"  API token      {token.key}",
            f"  try:           curl -H 'Authorization: Bearer {token.key}' {base}/api/v1/agents",
            f"  sandbox        {caps.backend}/{caps.tier}"
            + ("" if caps.isolated else "  ** UNISOLATED: commands run without a sandbox **")
            + ("" if caps.available else f"  ** UNAVAILABLE: {caps.reason} **"),
            "",
        ]
        self.stdout.write("\n".join(lines))
