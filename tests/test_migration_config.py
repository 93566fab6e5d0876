"""[[migrations]] config: the issue's example parses, defaults apply, and each mistake is one clear error."""

import datetime as dt
import subprocess
import sys
import tomllib

import pytest

from llmpulse.core.config import parse_config
from llmpulse.core.migration import DEFAULT_PHASES, Phase
from llmpulse.core.validate import ConfigError

EXAMPLE = """
[[migrations]]
name = "gpt-4.1"
from = ["gpt-4o", "gpt-4"]
to = "gpt-4.1"
start = 2025-01-21
deadline = 2025-07-14
phases = [
  { name = "preparation", share = 0.0 },
  { name = "testing",     share = 0.05 },
  { name = "rollout",     share = 0.5 },
  { name = "full",        share = 1.0 },
  { name = "completed",   share = 1.0 },
]
window = "24h"
"""


def parse(text: str):
    return parse_config(tomllib.loads(text), "test.toml")


def test_issue_example_parses():
    (m,) = parse(EXAMPLE).migrations
    assert m.name == "gpt-4.1"
    assert m.from_models == ("gpt-4o", "gpt-4")
    assert m.to_model == "gpt-4.1"
    assert m.start == dt.date(2025, 1, 21) and m.deadline == dt.date(2025, 7, 14)
    assert m.phases == DEFAULT_PHASES
    assert m.window == 86400.0
    assert m.target_share == 1.0
    # The deadline counts as a whole day.
    assert m.deadline_ts == dt.datetime(2025, 7, 15, tzinfo=dt.UTC).timestamp()


def test_defaults_when_phases_and_window_omitted():
    (m,) = parse(
        '[[migrations]]\nname="x"\nfrom="a"\nto="b"\nstart=2025-01-01\ndeadline="2025-02-01"\n'
        'phases=[{name="off", share=0}, {name="on", share=1}]\nwindow="1h"\n'
    ).migrations
    assert m.from_models == ("a",)
    assert m.phases == (Phase("off", 0.0), Phase("on", 1.0))
    assert m.window == 3600.0
    (d,) = parse('[[migrations]]\nname="x"\nfrom=["a"]\nto="b"\nstart=2025-01-01\ndeadline=2025-02-01\n').migrations
    assert [p.name for p in d.phases] == ["preparation", "testing", "rollout", "full", "completed"]
    assert d.window == 86400.0 and d.auto_advance is True


def test_no_migrations_is_an_empty_list():
    assert parse("").migrations == []


BASE = 'name="m"\nfrom=["a"]\nto="b"\nstart=2025-01-01\ndeadline=2025-03-01\n'


@pytest.mark.parametrize(
    "body, key, expected",
    [
        (BASE + 'colour="red"\n', "migrations[0].colour", "one of"),
        ('from=["a"]\nto="b"\nstart=2025-01-01\ndeadline=2025-03-01\n', "migrations[0].name", "this key to be set"),
        (BASE.replace('from=["a"]', "from=[]"), "migrations[0].from", "old model names"),
        (BASE.replace('to="b"', 'to="a"'), "migrations[0].to", "not also listed"),
        (BASE.replace("deadline=2025-03-01", "deadline=2024-12-01"), "migrations[0].deadline", "on or after start"),
        (BASE.replace("start=2025-01-01", 'start="soon"'), "migrations[0].start", "a date like"),
        (BASE + 'window="5x"\n', "migrations[0].window", "a duration"),
        (BASE + 'phases=[{name="only", share=0}]\n', "migrations[0].phases", "at least two"),
        (
            BASE + 'phases=[{name="a", share=0.5}, {name="b", share=0.2}]\n',
            "migrations[0].phases[1].share",
            "phases go forward",
        ),
        (BASE + 'phases=[{name="a", share=0}, {name="b", share=1.5}]\n', "migrations[0].phases[1].share", "<= 1"),
        (BASE + 'phases=[{name="a", share=0}, {name="a", share=1}]\n', "migrations[0].phases[1].name", "not used"),
        (
            BASE + 'phases=[{name="a", share=0}, {name="b", share=1, colour=1}]\n',
            "migrations[0].phases[1].colour",
            "one of",
        ),
    ],
)
def test_bad_migration_config_names_the_key(body, key, expected):
    with pytest.raises(ConfigError) as err:
        parse("[[migrations]]\n" + body)
    assert err.value.key == key
    assert expected in str(err.value)
    assert str(err.value).startswith("test.toml: ")


def test_duplicate_names_rejected():
    with pytest.raises(ConfigError) as err:
        parse("[[migrations]]\n" + BASE + "[[migrations]]\n" + BASE)
    assert err.value.key == "migrations[1].name"


def test_bad_config_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[[migrations]]\n" + BASE + 'window="soon"\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from llmpulse.core.cli import main; sys.exit(main())",
            "--config",
            str(cfg),
            "--db",
            str(tmp_path / "x.db"),
            "migration",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "migrations[0].window" in proc.stderr
    assert "Traceback" not in proc.stderr
