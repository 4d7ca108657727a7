"""DRF permission: the request is authenticated and its credential has the view's scope.

Each view names the scope it needs in ``required_scope`` (an :class:`accounts.models.Scope`
value, or ``None`` for "any authenticated credential"). A view that does not set it needs
``admin``: a new endpoint is closed until someone decides who may call it. Object access
(team roles) is the selectors' job, not this class's.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission


class HasScope(BasePermission):
    """``IsAuthenticated`` plus the view's ``required_scope`` (403 ``insufficient_scope``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        # Imported here: DRF loads this class while ``rest_framework.views`` is still importing.
        from accounts import access
        from accounts.models import Scope

        user = request.user
        if user is None or not user.is_authenticated:
            return False
        scope = getattr(view, "required_scope", Scope.ADMIN)
        if scope is not None:
            access.require_scope(user, scope)
        return True
