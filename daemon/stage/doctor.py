"""``antiphon doctor``: what to check when Antiphon does not play on stage, in one command.

It takes the same settings as ``antiphon run`` (the flags and ``--config``, from the one
settings table) and looks at what ``antiphon run`` would use, in the order it starts up:
the settings, the model, the MIDI systems and their ports, the mapping file, the recording
folder, the OSC port, and the real-time limits. One line each: ``ok``, or what is wrong and
what to do. It exits with the status ``antiphon run`` would stop with (0 when it would start:
69 no MIDI system, 78 a configuration to fix; see :mod:`antiphon.daemon.stage.live`).

This module gathers the facts (it opens and closes MIDI clients, binds and frees the OSC
port, loads the model); :mod:`antiphon.daemon.stage.diagnosis` judges them.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from antiphon.daemon.settings import (
    AUTO_MODEL,
    LINE_MODEL,
    PIANO_MODEL,
    Settings,
    SettingsError,
    add_settings_arguments,
    model_folders,
    resolve_settings,
)
from antiphon.daemon.stage.diagnosis import (
    FAIL,
    SKIP,
    Finding,
    MidiFacts,
    config_finding,
    exit_status,
    file_finding,
    format_finding,
    link_finding,
    midi_system_finding,
    model_finding,
    models_folders_finding,
    osc_finding,
    port_findings,
    realtime_finding,
    record_finding,
    transcription_finding,
    writable_folder_problem,
)
from antiphon.daemon.stage.live import EXIT_CONFIG, EXIT_UNAVAILABLE

from antiphon import __version__

LIBRARIES = ("onnxruntime", "python-rtmidi", "mido", "python-osc", "numpy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, print_config=False)


def run(args: argparse.Namespace) -> int:
    print(_versions())
    findings = diagnose(args)
    for finding in findings:
        print(format_finding(finding))
    status = exit_status(findings)
    if status:
        failed = sum(f.status == FAIL for f in findings)
        print(
            f"antiphon run would stop with exit status {status}: "
            f"fix the FAIL line{'s' * (failed > 1)} above"
        )
    else:
        print("antiphon run can start with these settings")
    return status


def _versions() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} missing")
    python = f"Python {platform.python_version()} on {sys.platform}"
    return f"antiphon {__version__}, {python}; " + ", ".join(found)


def _soundfile_version() -> str | None:
    """soundfile's version, without importing it (it loads libsndfile): the 'audio' extra."""
    try:
        return version("soundfile")
    except PackageNotFoundError:
        return None


def diagnose(args: argparse.Namespace) -> list[Finding]:
    """Every finding, in the order ``antiphon run`` starts up in."""
    settings, config = _settings(args)
    if settings.model == AUTO_MODEL:  # both shipped models must load
        findings = [config, _model(str(PIANO_MODEL)), _model(str(LINE_MODEL))]
    else:
        findings = [config, _model(settings.model)]
    findings.append(_models_folders(settings.models_dir))
    facts = midi_facts()
    system, api = midi_system_finding(settings.midi_api, facts)
    findings.append(system)
    if api is None:
        findings.append(Finding("MIDI ports", SKIP, "no MIDI system to list them on"))
    else:
        findings += port_findings(
            api,
            facts.inputs[api],
            facts.outputs[api],
            settings.port_name,
            settings.input_port,
            settings.output_port,
        )
    findings.append(file_finding("mapping", settings.mapping, _mapping_error(settings)))
    record = settings.record
    problem = None if record is None else writable_folder_problem(Path(record))
    findings.append(record_finding(record, problem))
    findings.append(_osc(settings))
    findings.append(_link(settings))
    findings.append(realtime_finding(*realtime_limits()))
    findings.append(transcription_finding(_soundfile_version()))
    return findings


def _settings(args: argparse.Namespace) -> tuple[Settings, Finding]:
    """The settings ``antiphon run`` would use; on an error, those of the flags alone (or the
    defaults), so the other checks still run."""
    config: Path | None = args.config
    try:
        settings, sources = resolve_settings(args)
    except SettingsError as err:
        try:
            settings, _ = resolve_settings(args, file_values={})
        except SettingsError:
            settings = Settings()
        return settings, config_finding(config, str(err), 0)
    from_file = sum(source == str(config) for source in sources.values())
    return settings, config_finding(config, None, from_file)


def _link(settings: Settings) -> Finding:
    from antiphon.daemon.musician.clocks.link_clock import link_installed

    return link_finding(settings.clock, settings.clock_out, link_installed())


def _model(path: str) -> Finding:
    from antiphon.daemon.musician.model.model_file import ModelError, load_model

    try:
        _, info = load_model(path)
    except ModelError as err:
        return model_finding(path, None, str(err))
    return model_finding(path, info, None)


def _models_folders(models_dir: str) -> Finding:
    folders = model_folders(models_dir)
    models = {
        folder: sorted(p.stem for p in folder.glob("*.onnx")) if folder.is_dir() else None
        for folder in folders
    }
    return models_folders_finding(folders, models, models_dir)


def midi_facts() -> MidiFacts:
    """Ask each MIDI system this build has whether it works, and for its ports."""
    from antiphon.daemon.midi.port_names import PortError
    from antiphon.daemon.midi.ports import compiled_apis, list_ports, unavailable_reason

    compiled = compiled_apis()
    facts = MidiFacts(tuple(compiled), jack_server=os.environ.get("JACK_DEFAULT_SERVER"))
    for api in compiled:
        reason = unavailable_reason(api)
        if reason is None:
            try:
                facts.inputs[api], facts.outputs[api] = list_ports(api)
            except PortError as err:
                reason = str(err)
        if reason is not None:
            facts.unavailable[api] = reason
    return facts


def _mapping_error(settings: Settings) -> str | None:
    from antiphon.daemon.surface.mapping import load_mapping
    from antiphon.daemon.surface.vocabulary import ControlError

    if settings.mapping is None:
        return None
    try:
        mapping = load_mapping(Path(settings.mapping))
    except ControlError as err:
        return str(err)
    if settings.end_phrase_cc is not None and settings.end_phrase_cc in mapping.cc:
        return f"mapping: cc.{settings.end_phrase_cc} is the end_phrase_cc"
    return None


def _osc(settings: Settings) -> Finding:
    from antiphon.daemon.surface.osc import OscError, OscSettingError, parse_host_port
    from antiphon.daemon.surface.vocabulary import Allowlist, ControlError

    host, port = settings.osc_host, settings.osc_port
    if not port:
        return osc_finding(host, port, None, None)
    try:
        Allowlist(settings.osc_allow)
        if settings.osc_feedback:
            parse_host_port(settings.osc_feedback)
    except (ControlError, OscSettingError) as err:
        return osc_finding(host, port, None, (str(err), EXIT_CONFIG))
    except OscError as err:
        return osc_finding(host, port, None, (str(err), EXIT_UNAVAILABLE))
    return osc_finding(host, port, udp_bind_error(host, port), None)


def udp_bind_error(host: str, port: int) -> str | None:
    """Why a UDP socket cannot be bound to ``host:port`` now; None when it can (and is freed)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except (OSError, OverflowError) as err:
        return getattr(err, "strerror", None) or str(err)
    return None


def realtime_limits() -> tuple[float | None, float | None]:
    """(``ulimit -r``, ``ulimit -l`` in bytes): soft limits, ``math.inf`` when unlimited,
    ``None`` where the system has no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return None, None

    def soft(name: str) -> float | None:
        which = getattr(resource, name, None)
        if which is None:
            return None
        value = resource.getrlimit(which)[0]
        return float("inf") if value == resource.RLIM_INFINITY else float(value)

    return soft("RLIMIT_RTPRIO"), soft("RLIMIT_MEMLOCK")
