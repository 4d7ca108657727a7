"""``manage.py create_oauth_app``: register an OAuth2 client (django-oauth-toolkit Application).

Prints ``client_id`` and, for a confidential client, ``client_secret``: the secret is hashed at
rest and cannot be shown again (docs/auth.md, "OAuth2").
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_application_model

GRANTS = ("authorization-code", "client-credentials")


class Command(BaseCommand):
    help = (
        "Register an OAuth2 application: authorization-code (+PKCE) for third-party apps that "
        "act for a consenting user, client-credentials for services acting as --user. Prints "
        "the client_id and the client_secret (shown once)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True, help="shown on the consent page")
        parser.add_argument("--grant", required=True, choices=GRANTS)
        parser.add_argument(
            "--redirect-uri",
            action="append",
            default=[],
            dest="redirect_uris",
            help="an exact callback URI (repeatable; required for authorization-code)",
        )
        parser.add_argument(
            "--user",
            required=True,
            help="username owning the application; client-credentials tokens act as this user",
        )
        parser.add_argument(
            "--public",
            action="store_true",
            help="a public client (no secret; PKCE only), e.g. a native or browser app",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON object"
        )

    def handle(
        self,
        *args: Any,
        name: str,
        grant: str,
        redirect_uris: list[str],
        user: str,
        public: bool,
        as_json: bool,
        **options: Any,
    ) -> None:
        Application = get_application_model()
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        if grant == "authorization-code" and not redirect_uris:
            raise CommandError("authorization-code applications need --redirect-uri")
        if grant == "client-credentials" and public:
            raise CommandError("client-credentials needs a confidential client (drop --public)")
        secret = "" if public else generate_client_secret()
        app = Application(
            name=name,
            user=owner,
            client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=(
                Application.GRANT_AUTHORIZATION_CODE
                if grant == "authorization-code"
                else Application.GRANT_CLIENT_CREDENTIALS
            ),
            redirect_uris=" ".join(redirect_uris),
            client_secret=secret,
        )
        try:
            app.full_clean(exclude=["client_secret"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        app.save()  # hashes client_secret
        out = {"client_id": app.client_id, "client_secret": secret or None, "name": name}
        if as_json:
            self.stdout.write(json.dumps(out))
            return
        self.stdout.write(f"client_id: {app.client_id}")
        if secret:
            self.stdout.write(f"client_secret: {secret}")
            self.stdout.write("(the secret is stored hashed: save it now, it is not shown again)")
