"""The ``antiphon`` command itself: its version and its subcommands, as a process."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from antiphon.daemon.cli import COMMANDS

pytestmark = [pytest.mark.system]

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def antiphon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antiphon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_is_the_package_version() -> None:
    version = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    result = antiphon("--version")
    assert (result.returncode, result.stdout) == (0, f"antiphon {version}\n")


def test_help_lists_every_subcommand_doctor_included() -> None:
    result = antiphon("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    listed = {line.split()[0] for line in lines if line[:4] == "    " and line[4] != " "}
    assert listed == {name for name, _, _ in COMMANDS}
    assert "doctor" in listed


def test_the_readme_lists_every_subcommand_with_its_help() -> None:
    readme = (PYPROJECT.parent / "README.md").read_text(encoding="utf-8").splitlines()
    for name, _, help_text in COMMANDS:
        assert f"antiphon {name:<9} {help_text}" in readme
