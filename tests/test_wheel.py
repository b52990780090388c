"""The package as a user gets it: the wheel built from a copy of the sources, installed with its
dependencies into a fresh virtual environment outside the repository, and run from a folder
that is neither (so nothing can come from the checkout).

The wheel must hold the ``antiphon`` namespace and its dist-info and nothing else at the top
level, the shipped models with their README and licence inside it, and no torch among its
dependencies. The build uses this environment's setuptools (``--no-build-isolation``, the
test extra has it); the install takes the runtime's dependencies from pip's cache or index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mido
import pytest

from tests.midi_files import write_eighths

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
# What pyproject.toml builds from: the metadata, and each folder it maps into `antiphon`.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "antiphon", "daemon", "training")
MODELS = (
    "antiphon-piano.onnx",
    "antiphon-piano-fp32.onnx",
    "antiphon-line.onnx",
    "README.md",
    "LICENSE",
)
MAX_WHEEL_BYTES = 10 * 2**20
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    stage: Path  # an empty folder to run the command in
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "antiphon"), *args],
            cwd=self.stage,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def python(self, code: str) -> str:
        result = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code],
            cwd=self.stage,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout.strip()


def _copy_sources(into: Path) -> None:
    """The files a build reads, without caches or build leftovers that a checkout may hold."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)
    models = into / "exported_models"
    models.mkdir()
    for name in (*MODELS, "__init__.py"):
        shutil.copy2(ROOT / "exported_models" / name, models / name)


def _pip(python: Path | str, *args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    source, dist, venv, stage = (work / n for n in ("source", "dist", "venv", "stage"))
    source.mkdir()
    stage.mkdir()
    _copy_sources(source)
    _pip(
        sys.executable,
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(dist),
        str(source),
    )
    (wheel,) = dist.glob("antiphon-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Nothing of this environment leaks into the new one: no PYTHONPATH, no active venv; the
    # user's models folder is an empty one of the test's own.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_DATA_HOME"] = str(work / "data")
    env["JACK_DEFAULT_SERVER"] = "antiphon-no-such-server"  # no MIDI system: doctor says so
    _pip(venv / "bin" / "python", "install", "-q", str(wheel), env=env)
    yield Installed(wheel, venv, stage, env)


def test_the_wheel_installs_only_the_antiphon_namespace_and_its_dist_info(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (record,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
        paths = [line.split(",")[0] for line in wheel.read(record).decode().splitlines() if line]
    dist_info = record.split("/")[0]
    assert {path.split("/")[0] for path in paths} == {"antiphon", dist_info}
    for name in MODELS:
        assert f"antiphon/exported_models/{name}" in paths
    for name in ("basic-pitch-nmp.onnx", "LICENSE-basic-pitch", "NOTICE-basic-pitch"):
        assert f"antiphon/training/models/{name}" in paths
    assert installed.wheel.stat().st_size < MAX_WHEEL_BYTES


def test_the_wheel_names_both_licences(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        text = wheel.read(metadata).decode()
        licence = wheel.read("antiphon/exported_models/LICENSE").decode()
    headers = text.split("\n\n")[0].splitlines()
    # the code, the models, the transcription model
    assert "License-Expression: MIT AND CC-BY-NC-SA-4.0 AND Apache-2.0" in headers
    assert "License-File: exported_models/LICENSE" in headers
    assert not any(h.startswith("Requires-Dist: torch") and "extra" not in h for h in headers)
    # Ableton Link's binding carries GPL terms: an extra, never a dependency.
    link = [h for h in headers if h.lower().startswith("requires-dist: linkpython-extern")]
    assert link and all('extra == "link"' in h for h in link)
    assert "CC BY-NC-SA 4.0" in licence


def test_the_installed_command_runs_from_anywhere_without_torch(installed: Installed) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert installed.run("--version").stdout == f"antiphon {version}\n"
    module = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "antiphon", "--version"],
        cwd=installed.stage,
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert module.stdout == f"antiphon {version}\n"
    find_torch = "import importlib.util; print(importlib.util.find_spec('torch'))"
    assert installed.python(find_torch) == "None"
    models = installed.python(
        "from antiphon.daemon.settings import INSTALLED_MODELS_DIR; print(INSTALLED_MODELS_DIR)"
    )
    assert Path(models).is_relative_to(installed.venv)


def test_the_installed_command_answers_a_call_with_the_shipped_model(installed: Installed) -> None:
    write_eighths(installed.stage / "call.mid", [60, 62, 64, 65, 67, 65, 64, 62])
    installed.run("respond", "call.mid", "-o", "reply.mid", "--seed", "1")
    reply = mido.MidiFile(installed.stage / "reply.mid")
    notes = [m for m in mido.merge_tracks(reply.tracks) if m.type == "note_on" and m.velocity]
    assert len(notes) >= 4  # reply_min_notes


def test_the_installed_doctor_finds_the_installed_model_and_no_midi_system(
    installed: Installed,
) -> None:
    result = installed.run("doctor", "--midi-api", "jack", "--osc-port", "0", check=False)
    assert result.returncode == 69, result.stdout + result.stderr
    # The default model is auto: both shipped models, each from the installed package.
    model_lines = [line for line in result.stdout.splitlines() if line.startswith("ok    model:")]
    models = [Path(line.split(": ", 1)[1]) for line in model_lines]
    assert sorted(m.name for m in models) == ["antiphon-line.onnx", "antiphon-piano.onnx"]
    assert all(m.is_relative_to(installed.venv) for m in models)
    assert "no JACK server named 'antiphon-no-such-server' running" in result.stdout
