"""The wheel holds every module under llmpulse.* and nothing at top level; a foreign `core` cannot shadow it.

Package discovery does not follow setuptools' package-dir mapping, so pyproject.toml lists packages by
hand: this test is what stops a new sub-package from working in an editable install and then going
missing from the wheel.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("llmpulse-*.whl")
    return built


def test_wheel_holds_every_source_file_under_llmpulse(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"llmpulse/{path.relative_to(ROOT).as_posix()}"
        for folder in ("core", "tui")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".py", ".tcss"} and "__pycache__" not in path.parts
    }
    assert expected, "found no source files to expect"
    assert sorted(expected - names) == []
    top_level = {name.split("/", 1)[0] for name in names if "/" in name}
    assert {"core", "tui"} & top_level == set()


def test_wheel_metadata_declares_spdx_licence(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    text = archive.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())


def test_a_foreign_core_package_does_not_shadow_llmpulse(tmp_path: Path) -> None:
    # Another distribution's top-level `core`, first on the path: it must not be what llmpulse imports.
    foreign = tmp_path / "site"
    (foreign / "core").mkdir(parents=True)
    (foreign / "core" / "__init__.py").write_text("raise ImportError('the foreign core was imported')\n")
    (foreign / "tui").mkdir()
    (foreign / "tui" / "__init__.py").write_text("raise ImportError('the foreign tui was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(foreign)}
    code = (
        "from llmpulse.core.usage.recorder import Recorder\n"
        "import llmpulse.tui.app\n"
        "from llmpulse.core.cli import main\n"
        "import sys; sys.argv = ['llmpulse', '--version']; main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    from importlib.metadata import version

    assert proc.stdout.strip() == f"llmpulse {version('llmpulse')}"
