"""One error root: every failure llmpulse expects derives from LlmpulseError, and `main()` prints it as
one line with the error's own exit status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import llmpulse.core
from llmpulse.core.cli import main
from llmpulse.core.errors import LlmpulseError


def _core_exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(llmpulse.core.__path__, "llmpulse.core."):
        if info.name.endswith(".__main__"):  # runs the command when imported
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def test_every_exception_the_core_defines_derives_from_the_root() -> None:
    classes = _core_exception_classes()
    names = {c.__name__ for c in classes}
    # the walk really reached the modules (a broken walk would pass vacuously)
    assert {"ConfigError", "StoreError", "CliError", "DurationError", "MigrationError", "RequestRejected"} <= names
    strays = sorted(f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, LlmpulseError))
    assert strays == []


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmpulse.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_main_prints_a_config_error_as_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_config(tmp_path, "[probe]\ninterval = 'soon'\n")
    code = main(["--config", str(cfg), "--db", str(tmp_path / "x.db"), "migration"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("llmpulse: config error: ") and "probe.interval" in err
    assert "Traceback" not in err


def test_main_prints_a_domain_error_as_one_line_with_its_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write_config(tmp_path, "")
    code = main(["--config", str(cfg), "--db", str(tmp_path / "x.db"), "migration", "advance", "nope"])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        err == "llmpulse: error: unknown migration 'nope'; known: none configured ([[migrations]] in the config file)\n"
    )
