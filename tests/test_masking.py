"""The secret masker (sessions/services/masking.py): whole strings, JSON, and chunked streams
where a value may be cut anywhere. Pure functions, no database."""

from __future__ import annotations

import logging
import random

import pytest

from sessions.services.masking import Masker, SecretLogFilter, StreamMasker, mask_log_record

TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


def _stream(masker: Masker, pieces: list[str]) -> list[str]:
    stream = StreamMasker(masker)
    return [stream.feed("s", p) for p in pieces] + [stream.flush("s")]


def test_every_occurrence_is_masked_with_the_name() -> None:
    m = Masker({"GH": TOKEN, "PW": "correct horse"})
    text = f"a {TOKEN} b correct horse c {TOKEN}"
    assert m.mask(text) == "a [secret:GH] b [secret:PW] c [secret:GH]"
    assert m.mask("nothing here") == "nothing here"


def test_empty_masker_and_empty_values_change_nothing() -> None:
    assert not Masker({})
    assert not Masker({"EMPTY": ""})
    assert Masker({"EMPTY": ""}).mask("abc") == "abc"
    assert _stream(Masker(), ["ab", "c"]) == ["ab", "c", ""]


def test_overlapping_values_leave_no_character_of_either() -> None:
    m = Masker({"A": "abcd", "B": "cdefg"})
    assert m.mask("xabcdefgy") == "x[secret:A]y"
    assert m.mask("abcabcd") == "abc[secret:A]"


def test_variants_stripped_json_escaped_and_long_lines() -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----\n"
    m = Masker({"PEM": pem, "Q": 'say "hi"\tnow'})
    assert m.mask(pem.strip()) == "[secret:PEM]"
    assert m.mask("line: MIIEvQIBADANBgkq") == "line: [secret:PEM]"
    assert m.mask('{"v": "say \\"hi\\"\\tnow"}') == '{"v": "[secret:Q]"}'
    assert Masker({"S": "ab\ncd"}).mask("ab") == "ab"  # short lines are not masked alone


def test_mask_data_walks_json_and_keys_without_mutating() -> None:
    m = Masker({"T": TOKEN})
    data = {"a": [TOKEN, {"b": f"x{TOKEN}"}], TOKEN: 1, "n": 3, "none": None}
    out = m.mask_data(data)
    assert out == {
        "a": ["[secret:T]", {"b": "x[secret:T]"}],
        "[secret:T]": 1,
        "n": 3,
        "none": None,
    }
    assert data["a"][0] == TOKEN  # the input is untouched
    assert m.mask_data(None) is None


def test_a_value_cut_at_every_position_is_masked() -> None:
    m = Masker({"T": TOKEN})
    text = f"start {TOKEN} middle {TOKEN}{TOKEN} end"
    for i in range(len(text) + 1):
        assert "".join(_stream(m, [text[:i], text[i:]])) == m.mask(text), i
    for i in range(0, len(text) + 1, 3):
        for j in range(i, len(text) + 1, 5):
            pieces = _stream(m, [text[:i], text[i:j], text[j:]])
            assert "".join(pieces) == m.mask(text), (i, j)
            assert all(TOKEN[:10] not in p for p in pieces)


def test_one_character_chunks() -> None:
    m = Masker({"T": TOKEN, "P": "pass"})
    text = f"x {TOKEN} pas pass p"
    assert "".join(_stream(m, list(text))) == "x [secret:T] pas [secret:P] p"


def test_only_a_possible_beginning_is_held_and_flush_releases_it() -> None:
    m = Masker({"T": TOKEN})
    stream = StreamMasker(m)
    assert stream.feed("s", "hello\n") == "hello\n"  # nothing to hold: no latency
    assert stream.feed("s", "key=ghp_16") == "key="
    assert stream.holds("s")
    assert stream.feed("s", "X more") == "ghp_16X more"  # it was not the token after all
    assert stream.feed("s", " ghp_") == " "
    assert stream.flush("s") == "ghp_"  # the stream ended: the tail goes out
    assert not stream.holds("s") and stream.flush("s") == ""


def test_held_text_is_shorter_than_the_longest_value() -> None:
    m = Masker({"T": TOKEN})
    stream = StreamMasker(m)
    stream.feed("s", "x" * 100 + TOKEN[:-1])
    assert stream._held["s"] == TOKEN[:-1]
    assert len(stream._held["s"]) <= m.longest - 1


def test_a_value_that_is_the_prefix_of_another_waits_for_the_longer_one() -> None:
    m = Masker({"SHORT": "abc", "LONG": "abcdef"})
    assert "".join(_stream(m, ["x abc", "def y"])) == "x [secret:LONG] y"
    assert "".join(_stream(m, ["x abc", "zz"])) == "x [secret:SHORT]zz"
    assert "".join(_stream(m, ["x abc"])) == "x [secret:SHORT]"


def test_streams_are_independent() -> None:
    stream = StreamMasker(Masker({"T": TOKEN}))
    assert stream.feed("out", "a " + TOKEN[:8]) == "a "
    assert stream.feed("err", TOKEN[8:]) == TOKEN[8:]  # not the continuation of "out"
    assert stream.feed("out", TOKEN[8:]) == "[secret:T]"
    assert sorted(stream.held_keys()) == []


def test_random_chunking_never_leaks() -> None:
    rng = random.Random(7)
    values = {"A": "s3cr3t", "B": "xyzzy-plugh", "C": "s3cr3t-and-more"}
    m = Masker(values)
    alphabet = "s3crtxyzplugh-and more\n"
    for _ in range(300):
        parts = [rng.choice([*values.values(), "".join(rng.choices(alphabet, k=rng.randint(0, 12)))])
                 for _ in range(rng.randint(1, 8))]  # fmt: skip
        text = "".join(parts)
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(4, len(text) + 1)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert "".join(_stream(m, pieces)) == m.mask(text)


def test_log_records_are_masked_in_message_args_and_traceback() -> None:
    m = Masker({"T": TOKEN})
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s used", (TOKEN,), None)
    mask_log_record(record, m)
    assert record.getMessage() == "token [secret:T] used"
    try:
        raise ValueError(TOKEN)
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, exc_info)
    mask_log_record(record, m)
    formatted = logging.Formatter().format(record)
    assert TOKEN not in formatted and "ValueError: [secret:T]" in formatted
    clean = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%d", (5,), None)
    mask_log_record(clean, m)
    assert clean.args == (5,)  # untouched when nothing is secret


@pytest.mark.parametrize("registered", [False, True])
def test_the_log_filter_masks_registered_values(registered: bool) -> None:
    from sessions.services import masking

    handle = masking.register("scope", {"T": TOKEN}) if registered else None
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "t=%s", (TOKEN,), None)
        assert SecretLogFilter().filter(record) is True
        assert (TOKEN in record.getMessage()) is not registered
    finally:
        if handle is not None:
            masking.unregister(handle)
    assert masking.masker_for_session("scope") is None
