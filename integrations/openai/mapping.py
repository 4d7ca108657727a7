"""From an OpenAI request to a task: parse and check ``/v1/chat/completions`` and
``/v1/responses`` bodies into a :class:`TurnRequest`, and build the task input for an agent.

The conversation rule (OpenAI clients resend the whole conversation; the server keeps it per
session): the *new* turn is the block of user messages after the last assistant or tool
message, joined with blank lines; everything before it is *history*. A continued session
(``X-Session-Id``, ``previous_response_id``, or the ``user`` field's session) already has its
history, so only the new turn is sent. A new session of an ``llm`` agent gets the history
imported into its log first (``services.history_import``), so the model sees it. System and
developer messages (and ``instructions``) are ignored: the agent's own ``system_prompt``
applies. Only text content is accepted (``text``, ``input_text``, ``output_text`` parts).

Task input per agent kind (:func:`task_input`): ``llm`` → a ``chat`` task with
``{"message": text}``; any other kind → a ``run`` task whose input is the text parsed as a JSON
object when it is one, else ``{<key>: text}`` with the key the agent's ``input_schema`` names
first among ``message``, ``prompt``, ``text``, ``query``, ``input``, ``instructions``,
``command``, ``code``, else the kind's: ``command`` for a ``command`` agent that runs input
commands and has no templates or command of its own (``instructions`` otherwise), ``code`` for
``python``, ``message`` for the rest.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sessions.models import Agent

from .http import invalid

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
TEXT_PARTS = {"text", "input_text", "output_text"}
TEXT_KEYS = ("message", "prompt", "text", "query", "input", "instructions", "command", "code")
RESPONSE_ID_PREFIX = "resp_"
MAX_USER_LEN = 256


@dataclass
class TurnRequest:
    """One OpenAI call, checked.

    Attributes:
        model: the requested model id (echoed back).
        text: the new user turn (the task's message).
        history: earlier messages in OpenAI chat format (``user``; ``assistant`` with optional
            ``tool_calls``; ``tool`` with ``tool_call_id``), for a new session only.
        stream, include_usage: streaming options.
        user_key: the ``user`` field (a stable session per caller, agent and value).
        session_id: the ``X-Session-Id`` header (a session to continue).
        previous_task_id: the task uuid of ``previous_response_id`` (Responses API).
        model_config: ``{"temperature"?, "max_tokens"?}`` for an llm agent's task.
        metadata: the Responses ``metadata`` to echo back.
    """

    model: str
    text: str
    history: list[dict[str, Any]] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    user_key: str | None = None
    session_id: str | None = None
    previous_task_id: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("You must provide a model parameter.", "model")
    return model.strip()


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be a boolean.", name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float | None) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{name}' must be a number.", name)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(f"'{name}' must be {bound}.", name)
    return float(value)


def _common(body: dict[str, Any], tokens_field: tuple[str, ...]) -> dict[str, Any]:
    """``temperature``, the max-tokens field(s) and ``user``, checked."""
    config: dict[str, Any] = {}
    temperature = _number(body, "temperature", 0, 2)
    if temperature is not None:
        config["temperature"] = temperature
    for name in tokens_field:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(f"'{name}' must be a positive integer.", name)
        config["max_tokens"] = value
    return config


def _user(body: dict[str, Any]) -> str | None:
    value = body.get("user")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_USER_LEN:
        raise invalid(f"'user' must be a string of at most {MAX_USER_LEN} characters.", "user")
    return value


def _text(content: Any, param: str, *, allow_none: bool = False) -> str:
    """The text of a message ``content`` (a string, or a list of text parts)."""
    if content is None and allow_none:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid("Message content must be a string or a list of text parts.", param)
    texts = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise invalid(
                f"Only text content is supported (got a part of type '{kind}').",
                f"{param}[{i}]",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid("A text part needs a string 'text'.", f"{param}[{i}].text")
        texts.append(text)
    return "".join(texts)


def _split(messages: list[dict[str, Any]], param: str) -> tuple[str, list[dict[str, Any]]]:
    """(the new user turn, the history before it) of checked chat-format messages."""
    last_reply = max(
        (i for i, m in enumerate(messages) if m["role"] in ("assistant", "tool", "function")),
        default=-1,
    )
    new = [m["content"] for m in messages[last_reply + 1 :] if m["role"] == "user"]
    if not new or not any(text.strip() for text in new):
        raise invalid("The conversation must end with a user message that has text.", param)
    history = [m for m in messages[: last_reply + 1] if m["role"] not in ("system", "developer")]
    return "\n\n".join(text for text in new if text), history


def _chat_message(raw: Any, i: int) -> dict[str, Any]:
    param = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise invalid("Each message must be an object.", param)
    role = raw.get("role")
    if role not in ROLES:
        raise invalid(
            f"Invalid role {role!r}; expected one of {', '.join(sorted(ROLES))}.",
            f"{param}.role",
        )
    message: dict[str, Any] = {
        "role": "tool" if role == "function" else role,
        "content": _text(raw.get("content"), f"{param}.content", allow_none=role == "assistant"),
    }
    if role == "assistant":
        calls = raw.get("tool_calls") or []
        if not isinstance(calls, list):
            raise invalid("'tool_calls' must be a list.", f"{param}.tool_calls")
        message["tool_calls"] = []
        for j, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise invalid("A tool call needs a function name.", f"{param}.tool_calls[{j}]")
            arguments = function.get("arguments", "")
            message["tool_calls"].append({
                "id": str(call.get("id") or f"call_{i}_{j}"), "name": function["name"],
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
            })  # fmt: skip
    if message["role"] == "tool":
        message["tool_call_id"] = str(raw.get("tool_call_id") or raw.get("name") or "")
    return message


def parse_chat(body: dict[str, Any], headers: Any) -> TurnRequest:
    """A ``POST /v1/chat/completions`` body, checked.

    Raises:
        OpenAIError: 400 ``invalid_request_error`` naming the field (``param``).
    """
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list.", "messages")
    checked = [_chat_message(raw, i) for i, raw in enumerate(messages)]
    text, history = _split(checked, "messages")
    n = body.get("n")
    if n is not None and n != 1:
        raise invalid("Only n=1 is supported: an agent gives one answer per call.", "n")
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if options is not None and not isinstance(options, dict):
        raise invalid("'stream_options' must be an object.", "stream_options")
    return TurnRequest(
        model=model,
        text=text,
        history=history,
        stream=stream,
        include_usage=bool((options or {}).get("include_usage")),
        user_key=_user(body),
        session_id=_session_header(headers),
        model_config=_common(body, ("max_tokens", "max_completion_tokens")),
    )


def _session_header(headers: Any) -> str | None:
    value = (headers.get("X-Session-Id") or "").strip()
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid("X-Session-Id must be a session id (a UUID).", "X-Session-Id") from None


def _input_item(raw: Any, i: int) -> dict[str, Any]:
    param = f"input[{i}]"
    if not isinstance(raw, dict):
        raise invalid("Each input item must be an object.", param)
    kind = raw.get("type", "message")
    if kind != "message":
        raise invalid(f"Input items of type '{kind}' are not supported; send messages.", param)
    role = raw.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise invalid(f"Invalid role {role!r} for an input message.", f"{param}.role")
    return {"role": role, "content": _text(raw.get("content"), f"{param}.content")}


def response_task_id(response_id: str) -> str:
    """The task uuid of a response id (``resp_<uuid hex>``).

    Raises:
        OpenAIError: 400 when it is not one of ours.
    """
    raw = response_id.removeprefix(RESPONSE_ID_PREFIX) if isinstance(response_id, str) else ""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise invalid(
            "previous_response_id is not a response id of this server.", "previous_response_id"
        ) from None


def parse_responses(body: dict[str, Any], headers: Any) -> TurnRequest:
    """A ``POST /v1/responses`` body, checked (text input: a string or message items).

    Raises:
        OpenAIError: 400 ``invalid_request_error`` naming the field (``param``).
    """
    model = _model(body)
    raw = body.get("input")
    history: list[dict[str, Any]] = []
    if isinstance(raw, str):
        if not raw.strip():
            raise invalid("'input' must not be empty.", "input")
        text = raw
    elif isinstance(raw, list) and raw:
        text, history = _split([_input_item(item, i) for i, item in enumerate(raw)], "input")
    else:
        raise invalid("'input' must be a string or a non-empty list of input items.", "input")
    previous = body.get("previous_response_id")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("'metadata' must be an object.", "metadata")
    return TurnRequest(
        model=model,
        text=text,
        history=history,
        stream=_bool(body, "stream"),
        user_key=_user(body),
        session_id=_session_header(headers),
        previous_task_id=response_task_id(previous) if previous else None,
        model_config=_common(body, ("max_output_tokens",)),
        metadata=metadata,
    )


def _text_key(agent: Agent) -> str:
    properties = (agent.input_schema or {}).get("properties") or {}
    for key in TEXT_KEYS:
        prop = properties.get(key)
        if isinstance(prop, dict) and prop.get("type", "string") == "string":
            return key
    spec = agent.spec or {}
    if agent.kind == "command":
        own = spec.get("templates") or spec.get("command")
        return "command" if spec.get("allow_input_command", True) and not own else "instructions"
    if agent.kind == "python":
        return "code"
    return "message"


def task_input(agent: Agent, text: str) -> tuple[str, dict[str, Any]]:
    """``(task_type, input)`` for ``text`` sent to ``agent`` (module docstring)."""
    if agent.kind == "llm":
        return "chat", {"message": text}
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return "run", parsed
    return "run", {_text_key(agent): text}
