"""Serve several one-operation views at one URL, picked by HTTP method.

DESIGN §7 puts several operations on one URL (``GET /agents`` lists, ``POST /agents``
creates) while the style guide wants one ``APIView`` per operation. :func:`route` joins them
without merging their code: each operation keeps its own serializers, parsers, permissions and
``@extend_schema``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponseBase
from rest_framework.views import APIView

ViewFunc = Callable[..., HttpResponseBase]


class _RouteSchemaView(APIView):
    """Schema-only stand-in for a route; it is never dispatched to.

    drf-spectacular enumerates URL patterns through ``callback.cls`` and instantiates that
    class once per method. This class exposes every operation's handler (so the operation's
    ``@extend_schema`` is found) and asks the operation's own view for the per-method policies
    the schema depends on (parsers, renderers, pagination, authentication, permissions).
    """

    operation_views: ClassVar[dict[str, type[APIView]]] = {}

    def _operation(self) -> APIView:
        method = getattr(getattr(self, "request", None), "method", None) or "GET"
        view_cls = self.operation_views.get(method) or next(iter(self.operation_views.values()))
        return view_cls()

    def get_parsers(self) -> list[Any]:
        return self._operation().get_parsers()

    def get_renderers(self) -> list[Any]:
        return self._operation().get_renderers()

    def get_authenticators(self) -> list[Any]:
        return self._operation().get_authenticators()

    def get_permissions(self) -> Any:
        return self._operation().get_permissions()

    @property
    def pagination_class(self) -> Any:
        return getattr(self._operation(), "pagination_class", None)


def route(**views: type[APIView]) -> ViewFunc:
    """A view serving ``views`` by method, e.g. ``route(get=AgentListApi, post=AgentCreateApi)``.

    ``HEAD`` goes to the ``get`` view. Any other method goes to the first view, which answers
    ``OPTIONS`` itself and refuses the rest with 405 in the usual error shape; ``Allow`` then
    lists the methods of the whole route.
    """
    if not views:
        raise ValueError("route() needs at least one view")
    callbacks: dict[str, ViewFunc] = {m.upper(): v.as_view() for m, v in views.items()}
    allowed = [*callbacks, *(["HEAD"] if "GET" in callbacks else []), "OPTIONS"]
    fallback = next(iter(callbacks.values()))

    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        method = "GET" if request.method == "HEAD" else request.method
        callback = callbacks.get(method or "")
        if callback is not None:
            return callback(request, *args, **kwargs)
        response = fallback(request, *args, **kwargs)
        response["Allow"] = ", ".join(allowed)
        return response

    name = "".join(v.__name__.removesuffix("Api") for v in views.values()) + "Route"
    handlers = {m.lower(): getattr(v, m.lower()) for m, v in views.items()}
    view.cls = type(  # type: ignore[attr-defined]
        name,
        (_RouteSchemaView,),
        {
            **handlers,
            "operation_views": {m.upper(): v for m, v in views.items()},
            "__module__": __name__,
        },
    )
    view.initkwargs = {}  # type: ignore[attr-defined]
    view.__name__ = name
    view.__doc__ = "Route of " + ", ".join(v.__name__ for v in views.values())
    # Each operation is a DRF view and does its own CSRF check for cookie-authenticated
    # requests; Django's middleware must not reject token-authenticated ones first.
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view
