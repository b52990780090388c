"""``antiphon eval-beat``: how the beat tracker hears real players whose tempo is known.

Every other measure of the beat here compares Antiphon with itself (a reply's grid with the
call's, a stretched take with the plain one); this one compares the tracker with the truth.
It reads MIDI files whose tempo meta event is the tempo the player kept (jazz-solos-dev's is
each solo's mean tempo, from the recording; a DAW's export of a take played to its click is
too; asap-piano's is not, it is a nominal tempo), plays each file's onsets into the tracker
(:class:`~antiphon.daemon.musician.hearing.beat.BeatTracker`) as the daemon does, and sorts its
reading after each onset group by how it stands to that tempo:

- *at the tempo* (within ``TOLERANCE``);
- *double or half* it (what a listener may tap on a fast or a slow tune: the grid is the same);
- *another level* (three halves, two thirds, three, a third, four thirds, three quarters, four,
  a quarter: a grid of the tempo, but a beat no one taps);
- *no level* of it: the tracker heard another tempo.

Per file it also says how often the tracker was sure (``CONFIDENT``: replies are placed on its
grid and the outgoing clock may start) and how often that sure reading was at the tempo or
double or half; and how often it heard a beat the running outgoing clock follows
(``FOLLOW_CONFIDENT``). Every file counts the same in the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.daemon.musician.clocks.clock_out import FOLLOW_CONFIDENT
from antiphon.daemon.musician.hearing.beat import CONFIDENT, BeatTracker
from antiphon.training.eval_duet import DuetEvalError, add_source_arguments, performances

TOLERANCE = 0.04  # a reading this near a level (as a share of it) is at that level
# How a reading stands to the tempo kept: the classes, and the tempo's multiples in each.
LEVELS = {
    "at_tempo": (1.0,),
    "double_or_half": (2.0, 0.5),
    "other_level": (1.5, 2.0 / 3.0, 3.0, 1.0 / 3.0, 4.0 / 3.0, 0.75, 4.0, 0.25),
}
RIGHT = ("at_tempo", "double_or_half")  # the readings a listener would tap along with
MIN_GROUPS = 32  # a file with fewer onset groups is not a take


class TempoMetaError(ValueError):
    """A file whose tempo meta event does not say one tempo."""


def kept_tempo_bpm(path: Path) -> float:
    """The tempo a MIDI file's tempo meta event says (its only one, or several alike)."""
    import mido

    try:
        midi = mido.MidiFile(path)
    except (OSError, ValueError, EOFError) as err:
        raise TempoMetaError(f"{path}: not a readable MIDI file ({err})") from err
    tempos = {m.tempo for track in midi.tracks for m in track if m.type == "set_tempo"}
    if not tempos:
        raise TempoMetaError(f"{path}: no tempo meta event, so no tempo to compare with")
    if len(tempos) > 1:
        raise TempoMetaError(f"{path}: {len(tempos)} different tempo meta events, not one tempo")
    return float(mido.tempo2bpm(tempos.pop()))


def level_of(reading_bpm: float, tempo_bpm: float) -> str:
    """Which class of ``LEVELS`` a reading falls in, or "no_level"."""
    ratio = reading_bpm / tempo_bpm
    for name, multiples in LEVELS.items():
        if any(abs(math.log(ratio / multiple)) <= math.log1p(TOLERANCE) for multiple in multiples):
            return name
    return "no_level"


def measure(name: str, onsets: np.ndarray, tempo_bpm: float) -> dict[str, Any]:
    """One file: the share of its onset groups by the class of the tracker's reading after
    each (a group without a reading, before the tracker has one, counts as "no_level")."""
    tracker = BeatTracker()
    classes = {key: 0 for key in (*LEVELS, "no_level")}
    sure = sure_right = followed = 0
    for onset_s in np.sort(onsets):
        heard = tracker.groups
        tracker.onset(float(onset_s))
        if tracker.groups == heard:
            continue  # part of the chord before it
        reading = tracker.estimate()
        level = "no_level" if reading is None else level_of(reading.tempo_bpm, tempo_bpm)
        classes[level] += 1
        if reading is not None and reading.confidence >= CONFIDENT:
            sure += 1
            sure_right += level in RIGHT
        followed += reading is not None and reading.confidence >= FOLLOW_CONFIDENT
    groups = tracker.groups
    return {
        "name": name,
        "tempo_bpm": tempo_bpm,
        "onset_groups": groups,
        **{key: count / groups for key, count in classes.items()},
        "sure": sure / groups,
        "right_when_sure": sure_right / sure if sure else None,
        "followed": followed / groups,
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    shares = ("at_tempo", "double_or_half", "other_level", "no_level", "sure", "followed")
    summary: dict[str, Any] = {"takes": len(rows)}
    for key in shares:
        summary[key] = float(np.mean([r[key] for r in rows])) if rows else None
    summary["ever_sure"] = float(np.mean([r["sure"] > 0 for r in rows])) if rows else None
    right = [r["right_when_sure"] for r in rows if r["right_when_sure"] is not None]
    summary["right_when_sure"] = float(np.mean(right)) if right else None
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="every file")


def run(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"tolerance": TOLERANCE}
    try:
        for source in args.sources:
            if (source / "corpus.json").is_file():
                raise DuetEvalError(
                    f"{source}: a corpus keeps no tempo; give the MIDI folder it was built from"
                )
            rows = []
            for name, notes in performances(source, args, "eval-beat"):
                try:
                    tempo_bpm = kept_tempo_bpm(Path(name))
                except TempoMetaError as err:
                    print(f"  skipped: {err}", file=sys.stderr)
                    continue
                row = measure(name, notes[:, 1], tempo_bpm)
                if row["onset_groups"] < MIN_GROUPS:
                    continue
                rows.append(row)
                print(f"  {format_row(row)}", file=sys.stderr)
            summary = summarise(rows)
            print(format_summary(source.name, summary))
            report[source.name] = {**summary, "rows": rows}
    except DuetEvalError as err:
        print(f"antiphon eval-beat: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def format_row(row: dict[str, Any]) -> str:
    return (
        f"{Path(row['name']).name} ({row['tempo_bpm']:.0f} bpm): at the tempo "
        f"{_percent(row['at_tempo'])}, double or half {_percent(row['double_or_half'])}, "
        f"another level {_percent(row['other_level'])}, none {_percent(row['no_level'])}; "
        f"sure {_percent(row['sure'])}"
    )


def format_summary(name: str, summary: dict[str, Any]) -> str:
    if not summary["takes"]:
        return f"{name}: no file with a tempo meta event and {MIN_GROUPS} onset groups"
    right = summary["right_when_sure"]
    return (
        f"{name}: {summary['takes']} takes; the tracker's reading at the tempo "
        f"{_percent(summary['at_tempo'])}, double or half {_percent(summary['double_or_half'])}, "
        f"another level {_percent(summary['other_level'])}, no level of it "
        f"{_percent(summary['no_level'])} of the onsets; sure at {_percent(summary['sure'])} "
        f"(ever, in {_percent(summary['ever_sure'])} of the takes), and then at the tempo or "
        f"double or half {'never sure' if right is None else _percent(right)}; a beat the "
        f"outgoing clock follows at {_percent(summary['followed'])}"
    )


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"
