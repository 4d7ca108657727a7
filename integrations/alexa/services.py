"""Writes of the Alexa app: skill bindings (create, update, delete) and the agent sessions of
Alexa conversations.

Who may call the skill services (a member of the skill's team, with an agent they can see) is
checked by the caller (``integrations.alexa.selectors.alexa_skill_get(for_write=True)``,
``alexa_skill_agent_get``, ``accounts.selectors.team_for_write``).
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from integrations.alexa.mapping import check_slot_mapping
from integrations.alexa.models import AlexaSkill
from integrations.runs import Run, run_start
from runtime_project.exceptions import Conflict, InvalidInput
from sessions.models import Agent, Session
from sessions.services.sessions import session_create, session_update

# amzn1.ask.skill.<uuid> today; amzn1.echo-sdk-ams.app.<uuid> for skills made before 2016.
APPLICATION_ID = re.compile(r"^amzn1\.[A-Za-z0-9][A-Za-z0-9._-]{4,190}$")
TEXT_MAX_CHARS = 8000  # Alexa's limit for one outputSpeech
NAME_MAX_CHARS = 200
SPEECH_FIELDS = ("launch_speech", "help_speech", "stop_speech", "fallback_speech")
EDITABLE = (
    "name",
    "agent",
    "application_id",
    "slot_mapping",
    *SPEECH_FIELDS,
    "end_session_after_answer",
    "enabled",
)


def alexa_skill_validate(*, values: dict[str, Any]) -> dict[str, Any]:
    """The skill fields present in ``values``, checked and cleaned (strings stripped).

    Raises:
        InvalidInput: every invalid field at once, under ``details.fields``.
    """
    errors: dict[str, Any] = {}
    cleaned: dict[str, Any] = {}
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX_CHARS:
            errors["name"] = [f"A name of 1 to {NAME_MAX_CHARS} characters is required."]
        else:
            cleaned["name"] = name.strip()
    if "application_id" in values:
        app_id = values["application_id"]
        if not isinstance(app_id, str) or not APPLICATION_ID.match(app_id.strip()):
            errors["application_id"] = [
                "The skill id from the Alexa developer console, e.g. "
                "amzn1.ask.skill.00000000-0000-0000-0000-000000000000."
            ]
        else:
            cleaned["application_id"] = app_id.strip()
    for field in SPEECH_FIELDS:
        if field in values:
            text = values[field]
            if not isinstance(text, str) or not text.strip() or len(text) > TEXT_MAX_CHARS:
                errors[field] = [f"A text of 1 to {TEXT_MAX_CHARS} characters is required."]
            else:
                cleaned[field] = text.strip()
    for field in ("enabled", "end_session_after_answer"):
        if field in values:
            if isinstance(values[field], bool):
                cleaned[field] = values[field]
            else:
                errors[field] = ["Must be true or false."]
    if "slot_mapping" in values:
        try:
            cleaned["slot_mapping"] = check_slot_mapping(values["slot_mapping"])
        except InvalidInput as exc:
            errors.update(exc.details.get("fields") or {"slot_mapping": [exc.message]})
    if errors:
        raise InvalidInput("The Alexa skill is not valid.", details={"fields": errors})
    return cleaned


def _save(skill: AlexaSkill, fields: list[str] | None = None) -> None:
    """Save, turning the unique (application id, agent) into a 409."""
    try:
        with transaction.atomic():
            if fields is None:
                skill.save()
            else:
                skill.save(update_fields=fields)
    except IntegrityError:
        raise Conflict(
            "This Alexa skill is already bound to this agent.",
            code="alexa_skill_exists",
            details={"application_id": skill.application_id, "agent": str(skill.agent.uuid)},
        ) from None


def alexa_skill_create(
    *,
    owner: Any,
    team: Any,
    agent: Agent,
    application_id: str,
    name: str,
    slot_mapping: dict[str, Any] | None = None,
    enabled: bool = True,
    **texts: Any,
) -> AlexaSkill:
    """Bind the Alexa skill ``application_id`` to ``agent``; its conversations run as
    ``owner`` in sessions of ``team``. ``texts``: any of ``launch_speech``, ``help_speech``,
    ``stop_speech``, ``fallback_speech``, ``end_session_after_answer`` (model defaults otherwise).

    Raises:
        TypeError: an unknown keyword.
        InvalidInput: invalid fields under ``details.fields``.
        Conflict: ``alexa_skill_exists``: this skill is already bound to this agent.
    """
    unknown = set(texts) - {*SPEECH_FIELDS, "end_session_after_answer"}
    if unknown:
        raise TypeError(f"alexa_skill_create() got unexpected fields: {sorted(unknown)}")
    values = alexa_skill_validate(
        values={
            "name": name,
            "application_id": application_id,
            "slot_mapping": slot_mapping,
            "enabled": enabled,
            **texts,
        }
    )
    skill = AlexaSkill(owner=owner, team=team, agent=agent, **values)
    _save(skill)
    return skill


def alexa_skill_update(*, skill: AlexaSkill, **changes: Any) -> AlexaSkill:
    """Apply ``changes`` (any of :data:`EDITABLE`; ``agent`` an :class:`Agent` the caller
    checked with ``alexa_skill_agent_get``) and return the skill as saved.

    Raises:
        TypeError: a key that is not editable.
        InvalidInput: invalid fields under ``details.fields``.
        Conflict: ``alexa_skill_exists``: the new (application id, agent) is taken.
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"alexa_skill_update() got fields it cannot change: {sorted(unknown)}")
    cleaned = alexa_skill_validate(values={k: v for k, v in changes.items() if k != "agent"})
    for key, value in cleaned.items():
        setattr(skill, key, value)
    fields = sorted(cleaned)
    if "agent" in changes:
        skill.agent = changes["agent"]
        fields.append("agent")
    _save(skill, [*fields, "updated_at"])
    return skill


def alexa_skill_delete(*, skill: AlexaSkill) -> None:
    """Delete the binding; the sessions of its conversations stay."""
    skill.delete()


# Conversations -----------------------------------------------------------------------------------


def alexa_run_start(
    *,
    skill: AlexaSkill,
    agent: Agent,
    session: Session | None,
    alexa_session_id: str,
    input: dict[str, Any],
    request: Any = None,
) -> Run:
    """Queue a ``run`` task with ``input`` on ``agent`` as the skill's owner: in ``session``
    (the one continuing this Alexa session), else in a new session of the skill's team whose
    ``metadata.alexa`` ties it to the skill and the Alexa session (sync).

    Raises:
        InvalidInput, Conflict, TooManyRequests: as :func:`integrations.runs.run_start`.
    """
    with transaction.atomic():  # a refused task must not leave an empty session behind
        if session is None:
            session = session_create(
                owner=skill.owner,
                team=skill.team,
                agent=agent,
                name=f"Alexa: {skill.name}"[:200],
                metadata={
                    "integration": "alexa",
                    "alexa": {"skill_id": str(skill.uuid), "session_id": alexa_session_id},
                },
            )
        return run_start(
            user=skill.owner,
            agent=agent,
            integration="alexa",
            input=input,
            session=session,
            request=request,
        )


def alexa_session_set_pending(*, session: Session, task_uuid: str | None) -> Session:
    """Remember (or forget, with ``None``) the task whose answer the Alexa user is still
    waiting for: the next intent of this Alexa session says its result instead of starting
    another task."""
    with transaction.atomic():
        fresh = Session.objects.select_for_update().get(pk=session.pk)
        metadata = dict(fresh.metadata or {})
        alexa = dict(metadata.get("alexa") or {})
        if task_uuid is None:
            alexa.pop("pending_task_id", None)
        else:
            alexa["pending_task_id"] = task_uuid
        metadata["alexa"] = alexa
        return session_update(session=fresh, metadata=metadata)
