"""``POST /alexa/{agent}``: the HTTPS endpoint of Alexa custom skills (docs/integrations/alexa.md).

An async Django view (the answer waits for the agent without holding a worker thread):

1. the raw body is parsed as an Alexa request envelope (``ask_sdk_model``) and verified
   (signature, certificate chain, timestamp; ``integrations.alexa.verification``): 400
   ``alexa_verification_failed`` otherwise, as Amazon requires;
2. the skill is the binding of the request's application id
   (``context.System.application.applicationId``) to the agent of the URL (uuid or slug):
   404 ``alexa_skill_not_found`` without one, 403 ``alexa_skill_disabled`` when it is turned
   off, 403 ``alexa_skill_no_access`` when its owner may no longer run the agent;
3. ``integrations.alexa.conversation`` answers.

No credential: Alexa's signature is the authentication, the skill's owner the identity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from ask_sdk_core.exceptions import SerializationException
from ask_sdk_core.serialize import DefaultSerializer
from ask_sdk_model import RequestEnvelope
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.alexa import selectors
from integrations.alexa.conversation import respond
from integrations.alexa.models import AlexaSkill
from integrations.alexa.verification import verify_request
from runtime_project.exceptions import ApplicationError, Forbidden, InvalidInput, PayloadTooLarge
from sessions.models import Agent

logger = logging.getLogger(__name__)
_serializer = DefaultSerializer()


def _application_id(request_envelope: Any) -> str:
    """``context.System.application.applicationId``, else the (older) session's."""
    for holder in (
        getattr(getattr(request_envelope, "context", None), "system", None),
        getattr(request_envelope, "session", None),
    ):
        app_id = getattr(getattr(holder, "application", None), "application_id", None)
        if app_id:
            return str(app_id)
    raise InvalidInput("The request names no skill (context.System.application.applicationId).")


def _prepare(
    headers: Mapping[str, str], raw: bytes, agent_ref: str
) -> tuple[AlexaSkill, Agent, Any]:
    """Parse and verify the request and find its skill (sync: DB and certificate download).

    Raises:
        InvalidInput: not an Alexa request envelope.
        AlexaVerificationFailed: see ``verify_request``.
        NotFound, Forbidden: see the module docstring.
    """
    try:
        body = raw.decode("utf-8")
        request_envelope = _serializer.deserialize(payload=body, obj_type=RequestEnvelope)
    except (UnicodeDecodeError, SerializationException):
        raise InvalidInput("The body is not an Alexa request envelope.") from None
    if not isinstance(request_envelope, RequestEnvelope) or request_envelope.request is None:
        raise InvalidInput("The body is not an Alexa request envelope.")
    verify_request(headers=headers, body=body, envelope=request_envelope)
    skill = selectors.alexa_skill_for_request(
        application_id=_application_id(request_envelope), agent_ref=agent_ref
    )
    if not skill.enabled:
        raise Forbidden(
            "This Alexa skill is turned off.",
            code="alexa_skill_disabled",
            details={"application_id": skill.application_id},
        )
    agent = selectors.alexa_skill_agent_for_run(skill=skill)
    return skill, agent, request_envelope


@csrf_exempt
async def alexa_endpoint(request: HttpRequest, agent: str) -> JsonResponse:
    """``POST /alexa/{agent}`` (see the module docstring)."""
    if request.method != "POST":
        response = JsonResponse(
            {
                "error": {
                    "code": "method_not_allowed",
                    "message": "Alexa sends POST requests.",
                    "details": {},
                }
            },
            status=405,
        )
        response["Allow"] = "POST"
        return response
    try:
        try:
            raw = request.body
        except RequestDataTooBig:
            raise PayloadTooLarge("The request body is too large.") from None
        skill, bound_agent, request_envelope = await sync_to_async(_prepare)(
            dict(request.headers), raw, agent
        )
        data = await respond(
            skill=skill, agent=bound_agent, request_envelope=request_envelope, http_request=request
        )
    except ApplicationError as exc:
        # Operators setting up a skill need to see why Alexa's requests are refused.
        logger.info("alexa request to %s refused: %s %s", agent, exc.code, exc.details)
        return JsonResponse(exc.as_dict(), status=exc.status_code)
    return JsonResponse(data)
