"""The command line: help everywhere, version, quiet mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, write
from guided_audio import __version__
from guided_audio.cli import main

COMMANDS = sorted(main.commands)


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"guided-audio, version {__version__}"


@pytest.mark.parametrize("command", [pytest.param(c, id=c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
    assert len(result.stdout.splitlines()) > 4


def test_main_help_lists_all_commands() -> None:
    result = cli("--help")
    for command in ("validate", "plan", "export", "play", "voices"):
        assert command in result.stdout


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    script = write(tmp_path, "title: Q\nsections:\n  - title: A\n    steps:\n      - say: Quiet.\n")
    result = cli("export", str(script), "-o", str(tmp_path / "q.wav"), "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert cli("validate", "-q", str(script)).stdout == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("loud", "expected a LUFS value like -16, or 'off'", id="words"),
        pytest.param("3", "3 LUFS is outside -40 .. -5", id="range"),
    ],
)
def test_bad_loudness_option(tmp_path: Path, value: str, message: str) -> None:
    script = write(tmp_path, "title: Q\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    result = cli("export", str(script), "--loudness", value)
    assert result.exit_code == 2
    assert message in result.stderr


def test_python_dash_m_runs_the_same_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "guided_audio", "--version"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"guided-audio, version {__version__}"
