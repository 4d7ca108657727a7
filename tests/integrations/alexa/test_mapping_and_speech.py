"""Slot mapping (intent slots → task input) and agent output → speech."""

from __future__ import annotations

import json

import pytest
from ask_sdk_core.serialize import DefaultSerializer
from ask_sdk_model import RequestEnvelope

from integrations.alexa.mapping import check_slot_mapping, input_for_intent, slot_values
from integrations.alexa.responses import SPEECH_MAX_CHARS, envelope, speakable, truncate
from runtime_project.exceptions import InvalidInput


def test_by_default_each_slot_becomes_the_input_key_of_its_name() -> None:
    assert input_for_intent({}, intent="Ask", slots={"city": "Paris", "day": "monday"}) == {
        "city": "Paris",
        "day": "monday",
    }


def test_an_intent_renames_or_drops_slots() -> None:
    mapping = {"intents": {"Ask": {"slots": {"city": "location", "day": None}}}}
    assert input_for_intent(mapping, intent="Ask", slots={"city": "Paris", "day": "mon"}) == {
        "location": "Paris"
    }
    # Another intent keeps the default.
    assert input_for_intent(mapping, intent="Other", slots={"city": "Rome"}) == {"city": "Rome"}


def test_templates_fill_placeholders_and_leave_out_missing_lone_ones() -> None:
    mapping = {
        "intents": {"Weather": {"slots": {"town": "city"}, "input": {"args": ["w", "{city}"]}}},
        "input": {
            "message": "({intent}, {locale}) {query}",
            "query": "{query}",
            "extra": ["{nope}", "kept"],
            "n": 3,
        },
    }
    assert input_for_intent(mapping, intent="Weather", slots={"town": "Oslo"}) == {
        "args": ["w", "Oslo"]
    }
    assert input_for_intent(mapping, intent="Chat", slots={"query": "hi"}, locale="en-GB") == {
        "message": "(Chat, en-GB) hi",
        "query": "hi",
        "extra": ["kept"],
        "n": 3,
    }
    assert input_for_intent(mapping, intent="Chat", slots={}) == {
        "message": "(Chat, ) ",
        "extra": ["kept"],
        "n": 3,
    }


def test_placeholders_cannot_reach_attributes() -> None:
    mapping = {"input": {"m": "{query.__class__} {0}"}}
    assert input_for_intent(mapping, intent="X", slots={"query": "hi"}) == {"m": " "}


def test_slot_values_prefer_the_entity_resolution_match() -> None:
    body = {
        "version": "1.0",
        "request": {
            "type": "IntentRequest",
            "requestId": "r",
            "timestamp": "2024-01-01T00:00:00Z",
            "intent": {
                "name": "Ask",
                "slots": {
                    "city": {
                        "name": "city",
                        "value": "the big apple",
                        "resolutions": {
                            "resolutionsPerAuthority": [
                                {"authority": "a", "status": {"code": "ER_SUCCESS_NO_MATCH"}},
                                {
                                    "authority": "b",
                                    "status": {"code": "ER_SUCCESS_MATCH"},
                                    "values": [{"value": {"name": "New York", "id": "NYC"}}],
                                },
                            ]
                        },
                    },
                    "day": {"name": "day", "value": " monday "},
                    "empty": {"name": "empty"},
                },
            },
        },
    }
    parsed = DefaultSerializer().deserialize(json.dumps(body), RequestEnvelope)
    assert slot_values(parsed.request.intent.slots) == {"city": "New York", "day": "monday"}


@pytest.mark.parametrize(
    "mapping",
    [
        {"intents": {"A": {"slots": {"x": 3}}}},
        {"intents": {"A": {"other": {}}}},
        {"input": "not an object"},
        {"unknown": 1},
    ],
)
def test_malformed_mappings_are_refused(mapping: object) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_slot_mapping(mapping)
    assert "slot_mapping" in exc.value.details["fields"]


def test_speech_has_no_markdown_nor_terminal_codes() -> None:
    text = (
        "# Forecast\n\nIt is **sunny** in *Paris* with `20` degrees, see [the map](http://x).\n"
        "- morning: _mild_\n- evening: ~~rain~~ dry\n```\ncode()\n```\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\x1b[31mred\x1b[0m snake_case 2*3*4 > 1"
    )
    assert speakable(text) == (
        "Forecast\n\nIt is sunny in Paris with 20 degrees, see the map.\nmorning: mild\n"
        "evening: rain dry\n\ncode()\n\na b\n\n1 2\nred snake_case 2*3*4 > 1"
    )


def test_long_speech_is_cut_to_alexas_limit() -> None:
    long_text = "word " * 5000
    cut = truncate(long_text, SPEECH_MAX_CHARS)
    assert len(cut) <= SPEECH_MAX_CHARS and cut.endswith("word…")
    data = envelope(speech=long_text, card_title="T", card_text=long_text, end_session=True)
    assert len(data["response"]["outputSpeech"]["text"]) <= 8000
    assert len(data["response"]["card"]["content"]) <= 8000


def test_envelopes_have_alexas_shape() -> None:
    assert envelope() == {"version": "1.0", "response": {}}
    assert envelope(speech="Hi", reprompt="Again?", end_session=False) == {
        "version": "1.0",
        "response": {
            "outputSpeech": {"type": "PlainText", "text": "Hi"},
            "reprompt": {"outputSpeech": {"type": "PlainText", "text": "Again?"}},
            "shouldEndSession": False,
        },
    }
