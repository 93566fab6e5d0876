"""How states and numbers look: a glyph and a word for every state (readable without colour)."""

from llmpulse.tui import format as fmt


def test_every_provider_state_is_a_glyph_and_a_word():
    for status in ("healthy", "degraded", "failed", "unknown"):
        text = fmt.status_text(status).plain
        glyph, word = text.split(" ", 1)
        assert len(glyph) == 1 and word == status
    assert fmt.status_text("healthy", enabled=False).plain == "○ disabled"
    assert fmt.status_text("unknown", configured=False).plain == "· not configured"
    # The core's word for what is missing, when it has one: a local provider needs no key.
    assert fmt.status_text("unknown", configured=False, setup_gap="no key").plain == "· no key"
    assert fmt.status_text("unknown", configured=False, setup_gap="not set up").plain == "· not set up"
    glyphs = {fmt.STATUS[s][0] for s in fmt.STATUS}
    assert len(glyphs) == len(fmt.STATUS), "two states share a glyph"


def test_alert_state_words():
    now = 1000.0
    assert fmt.alert_state_words("firing", None, False, now) == "firing"
    assert fmt.alert_state_words("acknowledged", None, False, now) == "acked"
    assert fmt.alert_state_words("firing", now + 1800, False, now) == "silenced 30m"
    assert fmt.alert_state_words("firing", now - 1, True, now) == "firing escalated"  # silence over
    assert fmt.alert_state_words("acknowledged", now + 7200, True, now) == "acked silenced 2h escalated"
    assert fmt.alert_state_words("resolved", None, True, now) == "resolved"


def test_sparkline_scales_between_min_and_max():
    assert fmt.sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert fmt.sparkline([5, 5, 5]) == "▁▁▁"
    assert fmt.sparkline([]) == ""
    assert fmt.sparkline(list(range(100)), width=10) == fmt.sparkline(list(range(90, 100)), width=10)
    assert len(fmt.sparkline(list(range(100)), width=10)) == 10


def test_bar_has_eighth_resolution_and_caps_at_full():
    assert fmt.bar(0.0, 4) == "░░░░"
    assert fmt.bar(1.0, 4) == "████"
    assert fmt.bar(2.5, 4) == "████"
    assert fmt.bar(0.5, 4) == "██░░"
    assert fmt.bar(0.5 + 1 / 32, 4) == "██▏░"
    assert fmt.bar(None, 3) == "░░░"
    assert all(len(fmt.bar(f / 100, 10)) == 10 for f in range(0, 130, 7))


def test_numbers():
    assert fmt.money(0.4213) == "$0.42"
    assert fmt.money(1234.5) == "$1,234"  # whole dollars from 100 up
    assert fmt.money(12_345) == "$12.3k"
    assert fmt.money(None) == "—"
    assert fmt.ms(830) == "830ms" and fmt.ms(2900) == "2.9s"
    assert fmt.pct(0.8124) == "81%" and fmt.pct(0.0312, 1) == "3.1%"
    assert fmt.count(1_234) == "1,234" and fmt.count(123_456) == "123.5k" and fmt.count(4_500_000) == "4.5M"
    assert fmt.age(42) == "42s" and fmt.age(300) == "5m" and fmt.age(7200) == "2h" and fmt.age(3 * 86400) == "3d"
    assert fmt.interval(0.5) == "500ms" and fmt.interval(2) == "2s" and fmt.interval(60) == "1m"
    assert fmt.days_left(30.4) == "30d" and fmt.days_left(0.3) == "<1d" and fmt.days_left(-2) == "2d over"


def test_dates_are_in_the_given_zone_not_the_hosts():
    from zoneinfo import ZoneInfo

    ts = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    assert fmt.clock(ts) == "00:00:00"
    assert fmt.day(ts) == "Jan 01"
    assert fmt.day(ts, ZoneInfo("America/New_York")) == "Dec 31"


def test_filter_matches_any_word_case_insensitively():
    assert fmt.matches("", "anything")
    assert fmt.matches("deep", "DeepSeek", None)
    assert not fmt.matches("groq", "openai", "healthy")
