"""Sign-in, sign-out and the console's home (``/console/``, ``/console/login/``,
``/console/logout/``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.decorators import method_decorator

from console.views.base import CONSOLE_CSP
from runtime_project.throttling import ip_rate_limited


def home(request: HttpRequest) -> HttpResponse:
    """``/console/``: the sessions list (which sends anonymous users to sign in)."""
    return redirect("console:sessions")


@method_decorator(ip_rate_limited, name="dispatch")
class ConsoleLogin(LoginView):
    """``/console/login/``: username and password for any active user (the admin's login lets
    staff only), then ``next`` (same host only) or ``/console/``. Signed-in users go straight
    there. POSTs count against the per-IP limit of ``/o/login/`` (``THROTTLE_OAUTH``, its own
    bucket per path): 429 ``throttled`` past it, so passwords cannot be guessed at speed."""

    http_method_names = ["get", "head", "post", "options"]  # FormView's PUT would sign in too
    template_name = "console/login.html"
    redirect_authenticated_user = True
    next_page = "console:home"  # a URL name: resolve_url() reverses it
    extra_context = {"page_config": {}}

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        # The same headers as every console page (console_render): the form is no exception.
        response["Content-Security-Policy"] = CONSOLE_CSP
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "same-origin"
        return response


class ConsoleLogout(LogoutView):
    """``/console/logout/`` (POST only, CSRF-checked): signs out, back to the sign-in page."""

    http_method_names = ["post", "options"]
    next_page = "console:login"
