import pytest

from llmpulse.core.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("7d", 604800),
        ("1h30m", 5400),
        (" 2W ", 1209600),
    ],
)
def test_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "", "m5", "1h 30", "-5s", "ten seconds"])
def test_bad_durations_name_the_value_and_the_form(text):
    with pytest.raises(DurationError, match="expected e.g. 500ms"):
        parse_duration(text)


@pytest.mark.parametrize("seconds,text", [(0.25, "250ms"), (45, "45s"), (90, "1m30s"), (7200, "2h"), (90061, "1d1h")])
def test_format(seconds, text):
    assert format_duration(seconds) == text
