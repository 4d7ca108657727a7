"""Settings of the integrations (``integrations/``) and of server modes (imported by
``runtime_project.settings``). Each integration has an ``*_ENABLED`` flag (default on) and its
own section below; docs/integrations.md lists them all."""

from __future__ import annotations

import os

from runtime_project.envvars import boolean, choice, typed

# SERVER MODES ----------------------------------------------------------------------------------
# Which URL modules and consumers this process serves (runtime_project/modes.py).
SERVER_MODE = choice("SERVER_MODE", "all", {"all", "runtime", "agent", "debugger", "embodiment"})
ADMIN_PORT: int | None = typed("ADMIN_PORT", int, None)
AGENT_DOMAIN = os.environ.get("AGENT_DOMAIN", "").strip().lower().strip(".")

# OPENAI-COMPATIBLE API (integrations/openai) ---------------------------------------------------
OPENAI_API_ENABLED = boolean("OPENAI_API_ENABLED", True)

# MCP SERVER (integrations/mcp) -----------------------------------------------------------------
MCP_ENABLED = boolean("MCP_ENABLED", True)

# CHATGPT ACTIONS (integrations/chatgpt) --------------------------------------------------------
CHATGPT_ENABLED = boolean("CHATGPT_ENABLED", True)

# ALEXA SKILL (integrations/alexa) --------------------------------------------------------------
ALEXA_ENABLED = boolean("ALEXA_ENABLED", True)

# AGENT ENDPOINTS, SWAGGER AND POSTMAN (integrations/endpoints, integrations/postman) ------------
AGENT_ENDPOINTS_ENABLED = boolean("AGENT_ENDPOINTS_ENABLED", True)
POSTMAN_ENABLED = boolean("POSTMAN_ENABLED", True)

# WEBHOOKS (integrations/webhooks) --------------------------------------------------------------
WEBHOOKS_ENABLED = boolean("WEBHOOKS_ENABLED", True)

# OAUTH CONNECTIONS FOR TOOLS (integrations/connections) ----------------------------------------
OAUTH_CONNECTIONS_ENABLED = boolean("OAUTH_CONNECTIONS_ENABLED", True)
