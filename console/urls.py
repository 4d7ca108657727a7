"""Console routes (``/console/…``; docs/console.md). The browser runtime page
(``/console/sessions/<id>/runtime/``) lives in ``runtimes.urls_console``."""

from __future__ import annotations

from django.urls import path

from console.views import agents, auth, keys, session_page, sessions

app_name = "console"

urlpatterns = [
    path("console/", auth.home, name="home"),
    path("console/login/", auth.ConsoleLogin.as_view(), name="login"),
    path("console/logout/", auth.ConsoleLogout.as_view(), name="logout"),
    path("console/agents/", agents.AgentListPage.as_view(), name="agents"),
    path("console/agents/new/", agents.AgentEditPage.as_view(), name="agent-new"),
    path("console/agents/<uuid:agent_id>/", agents.AgentDetailPage.as_view(), name="agent"),
    path("console/agents/<uuid:agent_id>/edit/", agents.AgentEditPage.as_view(), name="agent-edit"),
    path("console/sessions/", sessions.SessionListPage.as_view(), name="sessions"),
    path("console/sessions/<uuid:session_id>/", session_page.SessionPage.as_view(), name="session"),
    path("console/api-keys/", keys.ApiKeysPage.as_view(), name="api-keys"),
    path("console/shared/<str:token>/", session_page.SharedSessionPage.as_view(), name="shared"),
]
