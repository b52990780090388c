"""MIDI port names, matching and the choice of MIDI system: the pure part of the port layer.

Nothing here talks to the MIDI system (:mod:`antiphon.daemon.midi.ports` does, and is the only
module on
rtmidi): the functions take the lists of names that system gave, so they are tested without
ports.

Names the daemon's virtual ports get (``port_name`` setting, default "Antiphon"):

    ========  ===========================  ============================
    system    input (play into this)       output (replies come out)
    ========  ===========================  ============================
    JACK      ``Antiphon-in:in``           ``Antiphon-out:out``
    ALSA      ``Antiphon-in:in 128:0``     ``Antiphon-out:out 129:0``
    CoreMIDI  ``Antiphon-in``              ``Antiphon-out``
    ========  ===========================  ============================

(JACK gives each rtmidi port its own client, and two clients cannot share a name, hence the
``-in``/``-out`` clients; ALSA shows the same client and port names plus the client:port
numbers it assigned; Windows MM has no virtual ports: connect to a loopMIDI port by name.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIDI_APIS = ("alsa", "jack", "coremidi", "windows")  # the --midi-api names, auto aside
GUARD_PORT = "sysex-end"
API_LABEL = {"alsa": "ALSA", "jack": "JACK", "coremidi": "CoreMIDI", "windows": "Windows MM"}


class PortError(RuntimeError):
    """A MIDI port or MIDI system that cannot be used now; the message is one line for the
    user. It may go away by itself (a JACK server or a device that is not up yet)."""


class PortNotFound(PortError):
    """No port matches a name (it may be a device that is not plugged in yet)."""


class PortSetupError(PortError):
    """What was asked of the MIDI ports cannot be done on this machine, however long one
    waits (a MIDI system this build lacks, a name that matches several ports): the settings
    must change."""


# MIDI systems ------------------------------------------------------------------------------


def check_api(api: str, compiled: Sequence[str]) -> None:
    """:class:`PortSetupError` unless ``api`` is a MIDI system named in ``compiled``."""
    if api not in MIDI_APIS:
        raise PortSetupError(f"unknown MIDI system '{api}' (use one of {', '.join(MIDI_APIS)})")
    if api not in compiled:
        raise PortSetupError(f"this python-rtmidi was built without {API_LABEL[api]} support")


def auto_order(compiled: Sequence[str], platform: str = sys.platform) -> list[str]:
    """The systems ``--midi-api auto`` tries, in order, on ``platform``."""
    if platform.startswith("linux"):
        return ["alsa", "jack"]
    if platform == "darwin":
        return ["coremidi", "jack"]
    if platform == "win32":
        return ["windows"]
    return list(compiled)


def midi_system_advice(platform: str = sys.platform) -> str:
    """What to do when no MIDI system works on ``platform``."""
    return {
        "linux": "start JACK (`jackd -d dummy` or your audio setup) or load the ALSA sequencer "
        "(`sudo modprobe snd-seq`), then retry",
        "darwin": "CoreMIDI should always be there; check Audio MIDI Setup",
    }.get(platform, "install a MIDI system python-rtmidi supports")


def no_midi_system(reasons: Sequence[str], platform: str = sys.platform) -> PortError:
    """The error for ``--midi-api auto`` when every system failed, each for its reason."""
    return PortError(" and ".join(reasons) + ": " + midi_system_advice(platform))


def pick_api(
    choice: str,
    compiled: Sequence[str],
    unavailable: Callable[[str], str | None],
    platform: str = sys.platform,
) -> str:
    """The MIDI system a ``--midi-api`` choice means: ``choice`` itself, or for "auto" the first
    of :func:`auto_order` that works. ``unavailable(api)`` says why a built-in system cannot be
    used now (None: it works); it is asked in order, and no more than needed.

    Raises:
        PortSetupError: the system asked for is unknown or not built in.
        PortError: no system that may be used works now.
    """
    if choice != "auto":
        check_api(choice, compiled)
        reason = unavailable(choice)
        if reason is not None:
            raise PortError(reason)
        return choice
    reasons = []
    for api in auto_order(compiled, platform):
        try:
            check_api(api, compiled)
        except PortSetupError as err:
            reasons.append(str(err))
            continue
        reason = unavailable(api)
        if reason is None:
            return api
        reasons.append(reason)
    raise no_midi_system(reasons, platform)


# Names -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualPortNames:
    """The ports ``antiphon run`` makes: rtmidi client and port names, and the listed names."""

    input_client: str
    input_port: str
    input_listed: str  # as JACK, CoreMIDI and ALSA (plus " 128:0") list it
    output_client: str
    output_port: str
    output_listed: str

    @property
    def guard_client(self) -> str:
        """The client whose port ends a sysex left open on the input (JACK only, see
        :class:`antiphon.daemon.midi.ports.SysexGuard`)."""
        return f"{self.input_client}-guard"

    @property
    def guard_listed(self) -> str:
        return f"{self.guard_client}:{GUARD_PORT}"

    def is_own(self, listed_name: str) -> bool:
        """Whether a name in a port list is one of this daemon's ports (never connect to it)."""
        return any(
            listed_name == own or listed_name.startswith(own + " ")
            for own in (self.input_listed, self.output_listed, self.guard_listed)
        )

    def others(self, listed: Sequence[str]) -> list[str]:
        """The names in ``listed`` that are not this daemon's own ports."""
        return [name for name in listed if not self.is_own(name)]


def virtual_port_names(api: str, port_name: str) -> VirtualPortNames:
    """Client and port names for ``port_name`` on a MIDI system (see the module docstring)."""
    if api == "coremidi":
        # CoreMIDI programs list endpoints by their own name, so it must say whose it is.
        return VirtualPortNames(
            port_name, f"{port_name}-in", f"{port_name}-in",
            port_name, f"{port_name}-out", f"{port_name}-out",
        )  # fmt: skip
    return VirtualPortNames(
        f"{port_name}-in", "in", f"{port_name}-in:in",
        f"{port_name}-out", "out", f"{port_name}-out:out",
    )  # fmt: skip


def match_port(pattern: str, names: Sequence[str], kind: str = "port") -> str:
    """The one name in ``names`` that ``pattern`` means: equal or a part of it, any case.

    An exact match wins over partial ones ("KeyStep" finds "Arturia KeyStep 37 MIDI 1").
    No match raises :class:`PortNotFound`, several partial matches :class:`PortSetupError`
    (a longer name is needed); both messages list the candidates.
    """
    wanted = pattern.casefold()
    exact = [name for name in names if name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    found = exact or [name for name in names if wanted in name.casefold()]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(f"'{n}'" for n in names) or "none"
        raise PortNotFound(f"no MIDI {kind} matches '{pattern}' (there are: {known})")
    candidates = ", ".join(f"'{n}'" for n in found)
    raise PortSetupError(
        f"'{pattern}' matches several MIDI {kind}s: {candidates}; give more of the name"
    )


def own_port_clash(names: VirtualPortNames, listed: Sequence[str]) -> PortError | None:
    """The error when a port of ours already exists (another daemon with the same
    ``port_name``: JACK would quietly rename ours "Antiphon-in-01"); None when free."""
    taken = sorted(n for n in listed if names.is_own(n))
    if not taken:
        return None
    return PortError(
        f"a MIDI port named '{taken[0]}' already exists (another antiphon running?): "
        "choose another --port-name"
    )


def port_listing(api: str, inputs: Sequence[str], outputs: Sequence[str], port_name: str) -> str:
    """What ``antiphon ports`` prints for one working MIDI system."""
    names = virtual_port_names(api, port_name)
    lines = [f"{API_LABEL[api]}:", "  inputs (what --input-port accepts):"]
    lines += [f"    {name}" for name in inputs or ["(none)"]]
    lines.append("  outputs (what --output-port accepts):")
    lines += [f"    {name}" for name in outputs or ["(none)"]]
    if api != "windows":
        lines.append(
            f"  antiphon run makes the virtual ports '{names.input_listed}' (play into it)"
            f" and '{names.output_listed}' (replies)"
        )
    return "\n".join(lines)
