"""Used by the migrations that moved ownership from users to teams: each existing user's objects
go to that user's personal team (created here for users that predate teams). Takes the
migration's historical ``apps``, so it keeps working as the models change."""

from __future__ import annotations

from typing import Any

from django.utils.text import slugify


def personal_team_id(apps: Any, user_id: int, cache: dict[int, int]) -> int:
    """The pk of user ``user_id``'s personal team, creating it (owner role) if missing."""
    if user_id in cache:
        return cache[user_id]
    Team = apps.get_model("accounts", "Team")
    Membership = apps.get_model("accounts", "Membership")
    User = apps.get_model(*_user_model().split("."))
    mine = Membership.objects.filter(user_id=user_id, role="owner", team__is_personal=True).first()
    if mine is None:
        username = User.objects.get(pk=user_id).username
        stem = slugify(username)[:70] or "team"
        slug, n = stem, 1
        while Team.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{stem}-{n}"
        team = Team.objects.create(name=username, slug=slug, is_personal=True)
        mine = Membership.objects.create(team=team, user_id=user_id, role="owner")
    cache[user_id] = mine.team_id
    return mine.team_id


def assign_teams(apps: Any, app_label: str, model: str, owner_field: str = "owner_id") -> None:
    """Set ``team`` of every row of ``app_label.model`` without one to its owner's team."""
    Model = apps.get_model(app_label, model)
    cache: dict[int, int] = {}
    for pk, owner_id in Model.objects.filter(team__isnull=True).values_list("pk", owner_field):
        Model.objects.filter(pk=pk).update(team_id=personal_team_id(apps, owner_id, cache))


def _user_model() -> str:
    from django.conf import settings

    return str(settings.AUTH_USER_MODEL)
