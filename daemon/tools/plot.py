"""``antiphon plot``: a piano roll of a recorded session, the player's notes and Antiphon's.

The player's notes are blue, Antiphon's orange, its duet part (``mode duet``/``both``: the
notes on the duet's channel, ``--duet-channel``) green (colours that stay apart for
colour-blind eyes, and in grey); darker is louder. Each call (a run of the player's notes with
no reply in between) and each reply gets a band of its colour along the top with its number,
so the conversation reads left to right at a glance.

Reads any MIDI file: a session recording (:mod:`antiphon.daemon.stage.recorder`) has the tracks
"Player"
and "Antiphon"; in another file the track named like Antiphon, else the last of two or more
tracks with notes, is taken as Antiphon's. matplotlib is imported in :func:`run`, so the
command line stays light and says in one line which extra to install when it is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
from antiphon.daemon.codec import PEDAL, KeyEvent, Note, key_events_to_notes

log = logging.getLogger(__name__)

PLAYER_COLOUR = "#1f6fb4"
ANTIPHON_COLOUR = "#e8770e"
DUET_COLOUR = "#009e73"
DUET_CHANNEL = 2  # the daemon's default duet_output_channel
SECONDS_PER_INCH = 2.5
MIN_WIDTH_IN = 8.0
MAX_WIDTH_IN = 24.0
HEIGHT_IN = 4.5
DPI = 100
SUSTAIN_CC = 64
TURN_SPLIT_S = 1.5  # silence that ends a call even without a reply (listen mode, no model)
MARGIN_S = 0.3


class PlotError(ValueError):
    """A file that cannot be drawn (unreadable, no notes); one line for the user."""


@dataclass(frozen=True)
class Session:
    """The notes of each party, times in seconds from the start of the file."""

    player: list[Note]
    antiphon: list[Note]
    duet: list[Note] = field(default_factory=list)  # Antiphon's duet part

    @property
    def end_s(self) -> float:
        return max((n.offset_s for n in self.player + self.antiphon + self.duet), default=0.0)


@dataclass(frozen=True)
class Turn:
    """One call or reply: whose, its number, and the time it spans."""

    party: str  # "call" or "reply"
    number: int
    start_s: float
    end_s: float


def _track_notes(
    track: mido.MidiTrack,
    ticks_per_beat: int,
    tempo_map: list[tuple[int, int]],
    only: int | None = None,
    but: int | None = None,
) -> list[Note]:
    """The notes of a track as they sounded, sustain pedal applied (channels folded; with
    ``only``, that channel's alone, with ``but``, every other channel's; from 0)."""
    events = []
    tick = 0
    for message in track:
        tick += message.time
        channel = getattr(message, "channel", None)
        if (only is not None and channel != only) or (but is not None and channel == but):
            continue
        time_s = _seconds(tick, ticks_per_beat, tempo_map)
        if message.type == "note_on":
            events.append(KeyEvent(time_s, message.note, message.velocity))
        elif message.type == "note_off":
            events.append(KeyEvent(time_s, message.note, 0))
        elif message.type == "control_change" and message.control == SUSTAIN_CC:
            events.append(KeyEvent(time_s, PEDAL, message.value))
    return key_events_to_notes(events)


def _tempo_map(midi: mido.MidiFile) -> list[tuple[int, int]]:
    """(tick, tempo) changes; a type 1 file keeps them in its first track."""
    changes = [(0, 500_000)]
    tick = 0
    for message in midi.tracks[0] if midi.tracks else []:
        tick += message.time
        if message.type == "set_tempo":
            changes.append((tick, message.tempo))
    return sorted(changes)


def _seconds(tick: int, ticks_per_beat: int, tempo_map: list[tuple[int, int]]) -> float:
    seconds = 0.0
    for i, (start, tempo) in enumerate(tempo_map):
        end = tempo_map[i + 1][0] if i + 1 < len(tempo_map) else None
        if end is not None and tick >= end:
            seconds += mido.tick2second(end - start, ticks_per_beat, tempo)
            continue
        return seconds + mido.tick2second(tick - start, ticks_per_beat, tempo)
    return seconds


def read_session(path: Path, duet_channel: int | None = None) -> Session:
    """The player's and Antiphon's notes in a MIDI file; with ``duet_channel`` (1-16),
    Antiphon's notes on that channel are its duet part."""
    try:
        midi = mido.MidiFile(path)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as err:
        raise PlotError(f"{path}: not a readable MIDI file ({err})") from err
    tempo_map = _tempo_map(midi)
    tracks = [(t.name, _track_notes(t, midi.ticks_per_beat, tempo_map)) for t in midi.tracks]
    with_notes = [(name, notes) for name, notes in tracks if notes]
    if not with_notes:
        raise PlotError(f"{path}: no notes to draw")
    named = [i for i, (name, _) in enumerate(with_notes) if "antiphon" in name.casefold()]
    antiphon_index = named[0] if named else (len(with_notes) - 1 if len(with_notes) > 1 else -1)
    player = sorted(
        (n for i, (_, notes) in enumerate(with_notes) if i != antiphon_index for n in notes),
        key=lambda n: (n.onset_s, n.pitch),
    )
    antiphon = with_notes[antiphon_index][1] if antiphon_index >= 0 else []
    duet: list[Note] = []
    if duet_channel is not None and antiphon_index >= 0:
        track = midi.tracks[[i for i, (_, n) in enumerate(tracks) if n][antiphon_index]]
        duet = _track_notes(track, midi.ticks_per_beat, tempo_map, only=duet_channel - 1)
        antiphon = _track_notes(track, midi.ticks_per_beat, tempo_map, but=duet_channel - 1)
    return Session(player, antiphon, duet)


def turns(session: Session) -> list[Turn]:
    """Calls and replies: runs of one party's notes, in order of onset, that neither the
    other party nor ``TURN_SPLIT_S`` of silence interrupts."""
    tagged = sorted(
        [(n.onset_s, n.offset_s, "call") for n in session.player]
        + [(n.onset_s, n.offset_s, "reply") for n in session.antiphon]
    )
    found: list[Turn] = []
    counts = {"call": 0, "reply": 0}
    for onset_s, offset_s, party in tagged:
        last = found[-1] if found else None
        if last is not None and last.party == party and onset_s - last.end_s < TURN_SPLIT_S:
            found[-1] = Turn(party, last.number, last.start_s, max(last.end_s, offset_s))
            continue
        counts[party] += 1
        found.append(Turn(party, counts[party], onset_s, offset_s))
    return found


def draw(session: Session, output: Path, title: str, window_s: tuple[float, float] | None) -> None:
    """Write the piano roll of ``session`` (or of ``window_s`` of it) to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.patches import Patch

    start_s, end_s = window_s or (0.0, session.end_s)
    end_s = max(end_s, start_s + 1.0)
    everything = session.player + session.antiphon + session.duet
    shown = [n for n in everything if n.offset_s >= start_s and n.onset_s <= end_s]
    if not shown:
        raise PlotError(f"no notes between {start_s:g} s and {end_s:g} s")
    low = min(n.pitch for n in shown) - 2
    high = max(n.pitch for n in shown) + 2
    width_in = min(MAX_WIDTH_IN, max(MIN_WIDTH_IN, (end_s - start_s) / SECONDS_PER_INCH))
    figure, axes = pyplot.subplots(figsize=(width_in, HEIGHT_IN), dpi=DPI)
    band_low = high + 0.5
    band_height = max(2.0, (high - low) * 0.08)
    for notes, colour in (
        (session.player, PLAYER_COLOUR),
        (session.antiphon, ANTIPHON_COLOUR),
        (session.duet, DUET_COLOUR),
    ):
        _draw_notes(axes, notes, colour)
    for turn in turns(session):
        if turn.end_s < start_s or turn.start_s > end_s:
            continue
        colour = PLAYER_COLOUR if turn.party == "call" else ANTIPHON_COLOUR
        axes.axvspan(turn.start_s, turn.end_s, color=colour, alpha=0.06, linewidth=0)
        axes.broken_barh(
            [(turn.start_s, turn.end_s - turn.start_s)],
            (band_low, band_height),
            facecolors=colour,
            alpha=0.85,
        )
        axes.text(
            max(turn.start_s, start_s) + 0.05,
            band_low + band_height / 2,
            f"{turn.party} {turn.number}",
            color="white",
            fontsize=8,
            fontweight="bold",
            va="center",
            clip_on=True,
        )
    axes.set_xlim(start_s - MARGIN_S, end_s + MARGIN_S)
    axes.set_ylim(low - 0.5, band_low + band_height + 0.5)
    axes.set_xlabel("seconds")
    axes.set_ylabel("pitch")
    _pitch_ticks(axes, low, high)
    axes.grid(axis="x", alpha=0.25)
    axes.set_title(title, fontsize=10, loc="left")
    handles = [
        Patch(color=PLAYER_COLOUR, label=f"player ({len(session.player)} notes)"),
        Patch(color=ANTIPHON_COLOUR, label=f"Antiphon ({len(session.antiphon)} notes)"),
    ]
    if session.duet:
        handles.append(Patch(color=DUET_COLOUR, label=f"duet part ({len(session.duet)} notes)"))
    axes.legend(
        handles=handles,
        loc="upper right",
        bbox_to_anchor=(1.0, 1.13),
        ncols=len(handles),
        fontsize=8,
        frameon=False,
    )
    figure.tight_layout()
    figure.savefig(output)
    pyplot.close(figure)


def _draw_notes(axes: Any, notes: list[Note], colour: str) -> None:
    for note in notes:
        axes.broken_barh(
            [(note.onset_s, max(note.offset_s - note.onset_s, 0.02))],
            (note.pitch - 0.4, 0.8),
            facecolors=colour,
            alpha=0.35 + 0.65 * note.velocity / 127,
            edgecolors=colour,
            linewidth=0.5,
        )


def _pitch_ticks(axes: Any, low: int, high: int) -> None:
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    cs = [p for p in range(low, high + 1) if p % 12 == 0]
    axes.set_yticks(cs or [low, high])
    axes.set_yticklabels([f"{names[p % 12]}{p // 12 - 1}" for p in (cs or [low, high])])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", type=Path, help="a recorded session (MIDI file)")
    parser.add_argument("-o", "--output", type=Path, help="PNG to write (default: SESSION.png)")
    parser.add_argument("--start", type=float, default=None, help="from this many seconds in")
    parser.add_argument("--end", type=float, default=None, help="up to this many seconds in")
    parser.add_argument(
        "--duet-channel", type=int, default=DUET_CHANNEL, metavar="N",
        help=f"Antiphon's notes on this channel (1-16) are its duet part; 0: none "
        f"(default: {DUET_CHANNEL}, the daemon's)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    output = args.output or args.session.with_suffix(".png")
    try:
        if not 0 <= args.duet_channel <= 16:
            raise PlotError(f"--duet-channel: 1 to 16, or 0 for none (got {args.duet_channel})")
        session = read_session(args.session, args.duet_channel or None)
        window = None
        if args.start is not None or args.end is not None:
            window = (args.start or 0.0, session.end_s if args.end is None else args.end)
        draw(session, output, args.session.name, window)
    except PlotError as err:
        print(f"antiphon plot: {err}", file=sys.stderr)
        return 1
    log.info("piano roll written to %s", output)
    return 0
