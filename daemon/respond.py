"""``antiphon respond CALL.mid -o REPLY.mid``: answer a call given as a MIDI file.

The same engine and the same performer logic as on stage, driven by a simulated clock: the
call's messages are submitted at their times in the file, then the clock runs on until every
reply has finished. Nothing sleeps; a reply comes out in a fraction of its playing time.

A file with several phrases (pauses longer than the phrase gap) gets what Antiphon would have
played live: a reply after each phrase, cut short where the call goes on. At the end of the
file every key and the pedal are released.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import mido
from antiphon.daemon.settings import AUTO_MODEL, SETTINGS_FIELDS, Settings, SettingsError

if TYPE_CHECKING:  # onnxruntime loads only when a reply is made, not for ``--help``
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.model.voices import Voices

TICKS_PER_BEAT = 480
TEMPO = 500_000  # microseconds per beat: 120 bpm, so a second is 960 ticks
TimedMessage = tuple[float, mido.Message]

# The settings that shape a reply from a file, with their types.
RESPOND_SETTINGS: dict[str, type] = {
    "seed": int,
    "temperature": float,
    "noise": float,
    "follow": float,
    "mirror": float,
    "range_low": int,
    "range_high": int,
    "density": float,
    "dynamics": int,
    "phrase_gap_s": float,
    "turns": str,
    "eagerness": float,
    "reply_ratio": float,
    "reply_min_notes": int,
    "reply_max_notes": int,
    "reply_max_s": float,
    "max_note_s": float,
    "output_channel": int,
    # The beat: the tracker hears the call as played (its times, not the file's tempo map).
    "clock": str,
    "groove": float,
    "reply_start": str,
    "beats_per_bar": int,
}


class CallFileError(ValueError):
    """A call file that cannot be read or holds no notes."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("call", type=Path, help="the call: a MIDI file")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the reply, a MIDI file")
    parser.add_argument(
        "--model",
        default=AUTO_MODEL,
        help="the ONNX model to play with, or auto (the single-line model for one line, the "
        "piano model for chords)",
    )
    parser.add_argument(
        "--with-call",
        action="store_true",
        help="write the call and the reply as two tracks, at their times (default: the reply "
        "alone, starting at its first note)",
    )
    for name, kind in RESPOND_SETTINGS.items():
        flag = SETTINGS_FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, help=SETTINGS_FIELDS[name].metadata["help"])


def read_call(path: Path) -> list[TimedMessage]:
    """The note, pedal and controller messages of a MIDI file, with their times in seconds.

    Raises:
        CallFileError: unreadable file, or no note in it.
    """
    try:
        midi = mido.MidiFile(path)
        messages = []
        time_s = 0.0
        for message in midi:  # all tracks merged, times in seconds (tempo map applied)
            time_s += message.time
            if message.type in ("note_on", "note_off", "control_change"):
                messages.append((time_s, message.copy(time=0)))
    # mido reports malformed files as any of these while parsing or merging tracks.
    except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
        reason = str(err) or type(err).__name__
        raise CallFileError(f"{path}: not a readable MIDI file ({reason})") from err
    if not any(m.type == "note_on" and m.velocity > 0 for _, m in messages):
        raise CallFileError(f"{path}: no notes to answer")
    return messages


def respond(
    call: list[TimedMessage], settings: Settings, engine: Engine, voices: Voices | None = None
) -> list[TimedMessage]:
    """Antiphon's notes for a call, simulated: (time in seconds, message) in time order.
    ``voices`` (``--model auto``) chooses the engine at each call's end, ``engine`` first."""
    from antiphon.daemon.musician.playing.performer import ManualClock, Performer

    clock = ManualClock()
    output: list[TimedMessage] = []

    class Recorder:
        def send(self, message: mido.Message) -> None:
            output.append((clock.now_s, message))

    performer = Performer(settings, engine, Recorder(), clock=clock, voices=voices)
    end_s = 0.0
    for time_s, message in call:
        performer.process_until(time_s)
        performer.submit(message, time_s)
        end_s = time_s
    performer.process_until(end_s)
    for control, value in ((64, 0), (123, 0)):  # the file is over: nothing stays held
        performer.submit(mido.Message("control_change", control=control, value=value), end_s)
    while (due_s := performer.next_due_s()) is not None:
        performer.process_until(due_s)
    performer.close()
    return [(t, m) for t, m in output if m.type in ("note_on", "note_off")]


def write_midi(path: Path, reply: list[TimedMessage], call: list[TimedMessage] | None) -> None:
    """Write the reply (shifted to start at 0 when alone) or the call and reply as 2 tracks."""
    midi = mido.MidiFile(type=0 if call is None else 1, ticks_per_beat=TICKS_PER_BEAT)
    offset_s = reply[0][0] if call is None and reply else 0.0
    tracks = [("Antiphon", reply)] if call is None else [("Call", call), ("Antiphon", reply)]
    for name, messages in tracks:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        if len(midi.tracks) == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=TEMPO, time=0))
        last_tick = 0
        for time_s, message in messages:
            tick = round(mido.second2tick(time_s - offset_s, TICKS_PER_BEAT, TEMPO))
            track.append(message.copy(time=max(0, tick - last_tick)))
            last_tick = max(last_tick, tick)
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    midi.save(path)


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.musician.model.model_file import ModelError
    from antiphon.daemon.musician.model.voices import open_engine

    values = {name: getattr(args, name) for name in RESPOND_SETTINGS}
    try:
        settings = Settings(
            model=args.model,
            echo_window_ms=0.0,  # a file has no MIDI loop to echo
            **{name: value for name, value in values.items() if value is not None},
        )
        call = read_call(args.call)
        engine, voices = open_engine(settings)
        reply = respond(call, settings, engine, voices)
        write_midi(args.output, reply, call if args.with_call else None)
    except (SettingsError, CallFileError, ModelError) as err:
        print(f"antiphon respond: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"antiphon respond: cannot write {args.output}: {err.strerror}", file=sys.stderr)
        return 2
    notes = sum(1 for _, m in reply if m.type == "note_on")
    seconds = reply[-1][0] - reply[0][0] if reply else 0.0
    call_notes = sum(1 for _, m in call if m.type == "note_on" and m.velocity > 0)
    print(f"{args.output}: {notes} notes in {seconds:.1f} s, answering {call_notes} notes")
    return 0
