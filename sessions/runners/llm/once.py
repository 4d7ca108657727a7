"""One streamed model call outside the ``llm`` loop (a workflow's ``llm_prompt``, a python
agent's AI cell): the model settled by ``model_for``, its key, the endpoint check, the reply
streamed as ``message.delta`` events, the key redacted from errors."""

from __future__ import annotations

import uuid
from typing import Any

from sessions.runners.base import TaskContext, validate_schema
from sessions.runners.llm.providers import ModelReply, ModelSettings, ProviderError, provider_for
from sessions.runners.llm.runner import MODEL_OVERRIDE, api_key_for, check_endpoint


class ModelCallError(Exception):
    """The provider failed; ``message`` never holds the key, ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def model_for(ctx: TaskContext, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model (``config.model``, else ``spec.model``) and the sampling settings, the
    session's ``metadata.model_config`` then the task's ``config.model`` winning (as for the
    ``llm`` kind; never the endpoint). Raises InvalidInput for a bad session value."""
    model = dict(config.get("model") or ctx.spec["model"])
    session_config = (getattr(ctx.session, "metadata", None) or {}).get("model_config") or {}
    validate_schema(session_config, MODEL_OVERRIDE, "metadata.model_config")
    merged = {**session_config, **(ctx.config.get("model") or {})}
    if "name" in merged:
        model["name"] = merged["name"]
    sampling: dict[str, Any] = {k: config[k] for k in ("temperature", "max_tokens") if k in config}
    sampling.update({k: merged[k] for k in ("temperature", "max_tokens") if k in merged})
    return model, sampling


async def complete_once(
    ctx: TaskContext,
    config: dict[str, Any],
    messages: list[dict[str, Any]],
    *,
    tags: dict[str, Any],
) -> ModelReply:
    """Send ``messages`` (OpenAI chat format) to the model of ``config``/the spec; each text
    chunk is emitted as ``message.delta`` ``{"message_id", **tags, "text"}``.

    Raises:
        ApplicationError: the endpoint is refused (``runtime_project.outbound``'s checks);
            the model is outside the team's set (``model_not_allowed``).
        ModelCallError: the provider failed (after the SDK's retries).
    """
    from providers.access import model_run_check

    model, sampling = model_for(ctx, config)
    await model_run_check(ctx, model)  # team model access (model_not_allowed)
    await check_endpoint(model)
    api_key = await api_key_for(ctx, model)
    settings = ModelSettings(
        name=model["name"],
        max_tokens=sampling.get("max_tokens"),
        temperature=sampling.get("temperature"),
    )
    message_id = uuid.uuid4().hex[:12]

    def on_text(chunk: str) -> None:
        ctx.emit("message.delta", {"message_id": message_id, **tags, "text": chunk})

    try:
        async with provider_for(model, api_key=api_key, max_retries=2) as provider:
            reply = await provider.complete(
                messages, settings, on_text=on_text, cancelled=ctx.cancel_requested
            )
    except ProviderError as exc:
        message = exc.message.replace(api_key, "[redacted]") if api_key else exc.message
        raise ModelCallError(message, exc.status) from None
    ctx.emit("message.completed", {"message_id": message_id, **tags, "text": reply.text})
    return reply
