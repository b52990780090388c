"""What ``antiphon doctor`` concludes from the facts it gathered: pure, tested without a machine.

Each check takes facts (the names a MIDI system listed, an error message, a limit) and returns
a :class:`Finding`: ``ok``, ``warn`` (it works, but see the fix), ``FAIL`` (``antiphon run``
would stop: the fix says what to do, ``exit_status`` what it would exit with, as
:mod:`antiphon.daemon.stage.live` does) or ``skip`` (cannot be checked because of a failure
above). :mod:`antiphon.daemon.stage.doctor` gathers the facts and prints the findings.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from antiphon.daemon.midi.port_names import (
    API_LABEL,
    PortError,
    PortNotFound,
    PortSetupError,
    match_port,
    midi_system_advice,
    own_port_clash,
    pick_api,
    port_listing,
    virtual_port_names,
)
from antiphon.daemon.stage.live import EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE

if TYPE_CHECKING:
    from antiphon.daemon.musician.model.model_file import ModelInfo

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
# Where the real-time limits come from on Debian (the jackd2 package offers to install it).
AUDIO_LIMITS_FILE = "/etc/security/limits.d/audio.conf"


@dataclass(frozen=True)
class Finding:
    """One line of the diagnosis: a topic, how it stands, what was found, what to do."""

    topic: str
    status: str
    detail: str
    fix: str = ""
    exit_status: int = EXIT_OK  # what `antiphon run` exits with because of it (FAIL only)

    def __post_init__(self) -> None:
        if (self.status == FAIL) != (self.exit_status != EXIT_OK):
            raise ValueError("a FAIL finding, and only one, carries an exit status")


def exit_status(findings: Sequence[Finding]) -> int:
    """The status ``antiphon run`` would exit with: that of the first failure (the findings
    come in the order ``antiphon run`` starts up in), 0 when nothing fails."""
    return next((f.exit_status for f in findings if f.status == FAIL), EXIT_OK)


def format_finding(finding: Finding) -> str:
    """The finding as printed: ``status  topic: detail``, the detail's further lines and the
    fix (``-> ...``) indented under it."""
    first, *rest = finding.detail.splitlines() or [""]
    lines = [f"{finding.status:<5} {finding.topic}: {first}"]
    lines += [f"      {line}" for line in rest]
    if finding.fix:
        lines.append(f"      -> {finding.fix}")
    return "\n".join(lines)


# Settings and files ------------------------------------------------------------------------


def config_finding(config: Path | None, error: str | None, from_file: int) -> Finding:
    """The config file (``--config``) and the flags: readable and valid, or the one error;
    ``from_file``: how many settings in force come from the file (the flags override it)."""
    if error is not None:
        return Finding(
            "config",
            FAIL,
            error,
            "fix that setting; the checks below use the defaults and the flags alone",
            EXIT_CONFIG,
        )
    if config is None:
        return Finding("config", OK, "no config file (--config): defaults and flags")
    settings = f"{from_file} setting{'s' * (from_file != 1)}"
    return Finding("config", OK, f"{config}: valid, {settings} in force from it")


def model_finding(path: str, info: ModelInfo | None, error: str | None) -> Finding:
    """The model file ``antiphon run`` starts with, and the codec it was trained with."""
    if info is None:
        fix = "point --model (or model = in the config file) at an .onnx file antiphon export made"
        return Finding("model", FAIL, error or f"{path}: cannot be loaded", fix, EXIT_CONFIG)
    codec = info.codec
    return Finding(
        "model",
        OK,
        f"{path}\n"
        f"{info.architecture.upper()}, {info.layers} layers of {info.hidden}, "
        f"{info.vocabulary.size} tokens; codec v{codec.version}: {codec.time_shift_bins} time "
        f"shifts {codec.time_shift_min_s * 1000:g} ms to {codec.time_shift_max_s:g} s, "
        f"{codec.velocity_bins} velocity levels",
    )


def models_folders_finding(
    folders: Sequence[Path], models: Mapping[Path, Sequence[str] | None], models_dir: str
) -> Finding:
    """The folders ``/antiphon/model`` loads from, in order, and the models in each
    (``None``: the folder is not there)."""
    lines = []
    for folder in folders:
        found = models.get(folder)
        listed = "absent" if found is None else ", ".join(found) or "no .onnx files"
        lines.append(f"{folder}: {listed}")
    if models_dir and models.get(Path(models_dir)) is None:
        return Finding(
            "models folder",
            WARN,
            "\n".join(lines),
            "/antiphon/model can load nothing: make the folder or fix --models-dir",
        )
    return Finding("models folder", OK, "/antiphon/model looks in\n" + "\n".join(lines))


def file_finding(topic: str, path: str | None, error: str | None) -> Finding:
    """A file setting that must be usable when set (the mapping file)."""
    if path is None:
        return Finding(topic, OK, "none")
    if error is not None:
        return Finding(topic, FAIL, error, f"fix the file or the {topic} setting", EXIT_CONFIG)
    return Finding(topic, OK, path)


def record_finding(folder: str | None, problem: str | None) -> Finding:
    """The recording folder: off, or a folder ``antiphon run`` can make and write in."""
    if folder is None:
        return Finding("recording", OK, "off")
    if problem is not None:
        fix = "make the folder writable by this user, or choose another with --record"
        return Finding("recording", FAIL, problem, fix, EXIT_CONFIG)
    return Finding("recording", OK, f"into {folder}")


def writable_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` could not be made and written in; None when it can. Makes nothing: looks
    at the folder, or at the nearest folder above it that is there."""
    there = folder
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        return f"{there} is not a folder"
    if not os.access(there, os.W_OK | os.X_OK):
        return f"cannot write in {there}" + ("" if there == folder else f" (to make {folder})")
    return None


# MIDI --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MidiFacts:
    """What the MIDI systems of this machine said when asked."""

    compiled: tuple[str, ...]  # the systems this python-rtmidi was built with
    unavailable: dict[str, str] = field(default_factory=dict)  # why each one that fails does
    inputs: dict[str, list[str]] = field(default_factory=dict)  # each working one's ports
    outputs: dict[str, list[str]] = field(default_factory=dict)
    jack_server: str | None = None  # JACK_DEFAULT_SERVER, when set


def midi_system_finding(
    choice: str, facts: MidiFacts, platform: str = sys.platform
) -> tuple[Finding, str | None]:
    """Which MIDI systems work, and the one ``--midi-api choice`` picks (None: none)."""
    states = []
    for api in facts.compiled:
        reason = facts.unavailable.get(api)
        if reason is not None:
            states.append(f"{API_LABEL[api]}: {reason}")
        elif api == "jack":
            states.append(f"JACK: server '{facts.jack_server or 'default'}' running")
        else:
            states.append(f"{API_LABEL[api]}: works")
    built = "built with " + (", ".join(API_LABEL[a] for a in facts.compiled) or "no MIDI system")
    try:
        api = pick_api(choice, facts.compiled, facts.unavailable.get, platform)
    except PortSetupError as err:
        compiled = ", ".join(facts.compiled) or "none"
        fix = f"choose a MIDI system this build has with --midi-api (auto or {compiled})"
        return Finding("MIDI system", FAIL, f"{err}\n{built}", fix, EXIT_CONFIG), None
    except PortError:
        fix = midi_system_advice(platform)
        if facts.jack_server and "jack" in facts.compiled:
            fix += f"; JACK_DEFAULT_SERVER is '{facts.jack_server}': is that the server's name?"
        detail = "none works (--midi-api " + choice + ")\n" + "\n".join(states)
        return Finding("MIDI system", FAIL, detail, fix, EXIT_UNAVAILABLE), None
    detail = f"{API_LABEL[api]} (--midi-api {choice}); {built}\n" + "\n".join(states)
    return Finding("MIDI system", OK, detail), api


def port_findings(
    api: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    port_name: str,
    input_port: str | None,
    output_port: str | None,
) -> list[Finding]:
    """The ports the MIDI system lists, and whether ``antiphon run`` can make or find its own."""
    findings = [Finding("MIDI ports", OK, port_listing(api, inputs, outputs, port_name))]
    names = virtual_port_names(api, port_name)
    clash = own_port_clash(names, [*inputs, *outputs])
    if clash is not None:
        fix = "stop the other antiphon, or give this one another --port-name"
        findings.append(Finding("port name", FAIL, str(clash), fix, EXIT_UNAVAILABLE))
    sides = (
        ("input", "--input-port", input_port, inputs, names.input_listed),
        ("output", "--output-port", output_port, outputs, names.output_listed),
    )
    for kind, flag, pattern, listed, own in sides:
        topic = f"MIDI {kind}"
        if pattern is None and api == "windows":
            fix = f"make a port with loopMIDI and pass its name with {flag}"
            detail = "Windows MM has no virtual ports"
            findings.append(Finding(topic, FAIL, detail, fix, EXIT_CONFIG))
        elif pattern is None:
            findings.append(Finding(topic, OK, f"a virtual port, '{own}'"))
        else:
            findings.append(_matched_port(topic, flag, pattern, names.others(listed), kind))
    return findings


def _matched_port(topic: str, flag: str, pattern: str, listed: Sequence[str], kind: str) -> Finding:
    try:
        found = match_port(pattern, listed, kind)
    except PortNotFound as err:
        fix = (
            f"plug the device in (antiphon run waits for it and connects when it appears), "
            f"or give {flag} one of the names listed above"
        )
        return Finding(topic, WARN, str(err), fix)
    except PortSetupError as err:
        fix = f"give more of the name with {flag}"
        return Finding(topic, FAIL, str(err), fix, EXIT_CONFIG)
    return Finding(topic, OK, f"'{pattern}' finds '{found}'")


# OSC and the machine -----------------------------------------------------------------------


def osc_finding(
    host: str, port: int | None, bind_error: str | None, setting_error: tuple[str, int] | None
) -> Finding:
    """The OSC server: off, its address free, or what keeps it from listening.

    ``setting_error`` is a bad ``osc_allow`` or ``osc_feedback`` and the exit status
    ``antiphon run`` gives it (78; 69 for a feedback host that does not resolve yet).
    """
    if not port:
        return Finding("OSC", OK, "off (osc_port = 0)")
    if setting_error is not None:
        message, status = setting_error
        return Finding("OSC", FAIL, message, "fix osc_allow or osc_feedback", status)
    if bind_error is not None:
        detail = f"cannot listen on UDP {host}:{port}: {bind_error}"
        fix = "another program (another antiphon?) has it: stop it, or choose another --osc-port"
        return Finding("OSC", FAIL, detail, fix, EXIT_UNAVAILABLE)
    return Finding("OSC", OK, f"UDP {host}:{port} is free")


def link_finding(clock: str, clock_out: str, installed: bool) -> Finding:
    """Ableton Link: asked for (``clock link``, ``clock_out link`` or ``both``) or not, and
    whether its binding is installed. Without it the daemon still starts (the player's beat
    leads, no Link tempo goes out): a warning."""
    asked = [f"{name} {value}" for name, value in (("clock", clock), ("clock_out", clock_out))]
    asked = [a for a in asked if a in ("clock link", "clock_out link", "clock_out both")]
    if not asked:
        return Finding("Ableton Link", OK, "not asked for")
    if installed:
        return Finding("Ableton Link", OK, f"{' and '.join(asked)}: the binding is installed")
    detail = f"{' and '.join(asked)} asked for, but the Link binding is not installed"
    fix = "pip install 'antiphon[link]' (LinkPython-extern, GPL-2.0-or-later terms)"
    return Finding("Ableton Link", WARN, detail, fix)


def realtime_finding(rtprio: float | None, memlock_bytes: float | None) -> Finding:
    """The real-time limits (``ulimit -r``, ``ulimit -l``): only needed for ``SCHED_FIFO``
    (docs/service.md, "Real-time priority"), so never a failure. ``None``: no such limit here;
    ``math.inf``: unlimited."""
    if rtprio is None:
        return Finding("real-time", OK, "no real-time limits on this system")
    locked = "unlimited"
    if memlock_bytes is not None and not math.isinf(memlock_bytes):
        locked = f"{memlock_bytes / 2**20:g} MiB"
    if rtprio <= 0:
        fix = (
            "only for SCHED_FIFO (docs/service.md: Real-time priority): join the audio group "
            f"(`sudo usermod -aG audio $USER`, with '@audio - rtprio 95' in {AUDIO_LIMITS_FILE}) "
            "and log in again"
        )
        return Finding("real-time", WARN, "no real-time priority allowed (ulimit -r 0)", fix)
    allowed = "any" if math.isinf(rtprio) else f"up to {rtprio:g}"
    return Finding("real-time", OK, f"priority {allowed} (ulimit -r); locked memory {locked}")


def transcription_finding(soundfile_version: str | None) -> Finding:
    """What ``antiphon transcribe`` (and recordings in ``antiphon corpus``) can read: WAV
    always; FLAC, Ogg, MP3 and AIFF with soundfile, the 'audio' extra. Never a failure:
    ``antiphon run`` does not need it."""
    if soundfile_version is None:
        fix = "for FLAC, Ogg, MP3 and AIFF: pip install 'antiphon[audio]'"
        return Finding("transcription", OK, "reads WAV recordings (soundfile missing)", fix)
    detail = f"reads WAV, FLAC, Ogg, MP3 and AIFF recordings (soundfile {soundfile_version})"
    return Finding("transcription", OK, detail)
