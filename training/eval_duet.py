"""``antiphon eval-duet SOURCE...``: how Antiphon's duet part goes with a player.

Each performance (a corpus split, or the MIDI files of a folder) is cut to an excerpt and split
at ``--split`` into the player's part (at and above it) and the accompanying part (below it).
The player's part is played, causally and as if live, into the real
:class:`~antiphon.daemon.musician.playing.performer.Performer` on a
:class:`~antiphon.daemon.musician.playing.performer.ManualClock` in ``mode duet`` (the code the
daemon runs); Antiphon plays the part below. Beside it a deaf control: the same performer,
hearing only the player's first bar and carrying on for the rest of the excerpt
(``carry_bars`` at its most). Both are compared with the real accompanying part
(:mod:`~antiphon.training.duet_measures`): density ratio (machine / human onsets), pulse on the
player's grid, consonance with the player's harmony, register, voices crossing, and notes left
hanging once the performer is quiet.

A plain folder may be split by piece like ``antiphon corpus`` does (``--piece-by folder --seed
0 --corpus-split test``: the pieces the shipped model never saw), without building a corpus.
``--split lowest`` puts each file's whole line above the split (a soloist: Antiphon comps
below the lowest note); there is no human part to compare with then.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mido
import numpy as np
from antiphon.daemon.codec import Note
from antiphon.daemon.settings import PIANO_MODEL, Settings, SettingsError

if TYPE_CHECKING:
    from antiphon.daemon.musician.model.engine import Engine

EXCERPT_S = 60.0
DEAF_AFTER_BARS = 1
DEAF_CARRY_BARS = 64
FALLBACK_BAR_S = 2.0  # the first bar of a player whose beat cannot be fitted
QUIET_LIMIT = 200_000  # due moments run through after the last input before giving up
SUMMARY_KEYS = (
    "density_ratio",
    "density_ratio_deaf",
    "pulse_share",
    "pulse_share_human",
    "pulse_share_deaf",
    "consonance",
    "consonance_human",
    "consonance_deaf",
    "overlap",
    "overlap_human",
    "register",
    "register_human",
    "note_s",
    "note_s_human",
    "held_to_max",
    "held_to_max_human",
    "loudness",
    "loudness_human",
)


class DuetEvalError(ValueError):
    """A source that cannot be read (one line for the user)."""


class _Listener:
    """The performer's sink: every message with the simulated time it left."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []

    def send(self, message: mido.Message) -> None:
        self.sent.append((self.clock(), message))

    def notes(self, channel: int) -> tuple[np.ndarray, int]:
        """The notes sent on ``channel`` [N, 4], and how many are still sounding."""
        started: dict[int, tuple[float, int]] = {}
        notes: list[tuple[int, float, float, int]] = []
        for time_s, message in self.sent:
            if getattr(message, "channel", None) != channel:
                continue
            if message.type == "control_change" and message.control in (120, 123):
                ended = list(started.items())
                started.clear()
                notes.extend((p, on_s, time_s, v) for p, (on_s, v) in ended)
            elif message.type in ("note_on", "note_off"):
                if message.note in started:
                    on_s, velocity = started.pop(message.note)
                    notes.append((message.note, on_s, time_s, velocity))
                if message.type == "note_on" and message.velocity > 0:
                    started[message.note] = (time_s, message.velocity)
        array = np.asarray(sorted(notes, key=lambda n: n[1]), np.float64).reshape(-1, 4)
        return array, len(started)


def play_duet(
    player: np.ndarray,
    settings: Settings,
    engine: Engine,
    *,
    until_s: float | None = None,
    event_s: list[float] | None = None,
    feed_s: list[float] | None = None,
) -> tuple[np.ndarray, int]:
    """Play ``player``'s notes into a performer with ``settings``; Antiphon's duet notes,
    and how many were left sounding once it went quiet (or at ``until_s``). ``event_s``
    receives how long the performer took over each of the player's events (wall clock),
    ``feed_s`` how long each of the player's note-ons took to enter the model's state."""
    from antiphon.daemon.musician.playing.performer import ManualClock, Performer
    from antiphon.daemon.tools.turns_eval import note_messages

    class TimedPerformer(Performer):
        """The real performer, timing its handling of each of the player's events."""

        def _take(self, item: Any) -> None:
            started = time.perf_counter()
            super()._take(item)
            if event_s is not None:
                event_s.append(time.perf_counter() - started)

    engine.reset()
    engine.reseed(0)
    clock = ManualClock()
    listener = _Listener(clock)
    performer = TimedPerformer(settings, engine, listener, clock=clock)
    if feed_s is not None:
        _time_note_ons(performer, feed_s)
    notes = [Note(int(p), float(on), float(off), int(v)) for p, on, off, v in player]
    for time_s, message in note_messages(notes):
        performer.process_until(time_s)
        performer.submit(message, time_s)
    if until_s is not None:
        performer.process_until(until_s)
    else:
        for _ in range(QUIET_LIMIT):
            due_s = performer.next_due_s()
            if due_s is None:
                break
            performer.process_until(due_s)
    machine, hanging = listener.notes(settings.duet_output_channel - 1)
    performer.close()
    return machine, hanging


def _time_note_ons(performer: Any, feed_s: list[float]) -> None:
    """Time the performer's feeding of each of the player's note-ons (its conversation's
    ``note_on``, wrapped on this instance: the measure's only reach into the performer)."""
    conversation = performer._conversation
    note_on = conversation.note_on

    def timed(pitch: int, velocity: int, time_s: float) -> None:
        started = time.perf_counter()
        note_on(pitch, velocity, time_s)
        feed_s.append(time.perf_counter() - started)

    setattr(conversation, "note_on", timed)  # noqa: B010 (an instance's method, replaced)


def first_bar_s(player: np.ndarray) -> float:
    """The end of the player's first bar (four beats of the grid fitted on its notes)."""
    from antiphon.training.pulse_measures import fit_grid

    if len(player) == 0:
        return 0.0
    grid = fit_grid(player)
    bar_s = FALLBACK_BAR_S if grid is None else 4 * grid.beat_s
    return float(player[:, 1].min()) + bar_s


def measure(
    name: str,
    notes: np.ndarray,
    settings: Settings,
    engine: Engine,
    split: int | None,
    event_s: list[float] | None = None,
    feed_s: list[float] | None = None,
) -> dict[str, Any]:
    """The figures of one performance (see the module docstring)."""
    from antiphon.training import duet_measures as dm

    start_s = float(notes[:, 1].min()) if len(notes) else 0.0
    cut = dm.excerpt(notes, start_s, EXCERPT_S)
    split = split if split is not None else int(cut[:, 0].min()) if len(cut) else 60
    player, human = dm.split_hands(cut, split)
    chosen = Settings(**{**_fields(settings), "duet_split": split})
    machine, hanging = play_duet(player, chosen, engine, event_s=event_s, feed_s=feed_s)
    machine = machine[machine[:, 1] < EXCERPT_S]
    bar_end_s = first_bar_s(player)
    deaf_player = player[player[:, 1] < bar_end_s]
    deaf_settings = Settings(**{**_fields(chosen), "carry_bars": DEAF_CARRY_BARS})
    deaf, _ = play_duet(deaf_player, deaf_settings, engine, until_s=EXCERPT_S)
    deaf = deaf[deaf[:, 1] < EXCERPT_S]
    has_human = len(human) > 0
    return {
        "file": name,
        "split": split,
        "player_notes": len(player),
        "machine_notes": len(machine),
        "human_notes": len(human),
        "deaf_notes": len(deaf),
        "hanging": hanging,
        "density_ratio": dm.density_ratio(machine, human) if has_human else None,
        "density_ratio_deaf": dm.density_ratio(deaf, human) if has_human else None,
        "pulse_share": dm.windowed_pulse(player, machine),
        "pulse_share_human": dm.windowed_pulse(player, human),
        "pulse_share_deaf": dm.windowed_pulse(player, deaf),
        "consonance": dm.consonance(player, machine),
        "consonance_human": dm.consonance(player, human),
        "consonance_deaf": dm.consonance(player, deaf),
        "overlap": dm.overlap(player, machine),
        "overlap_human": dm.overlap(player, human),
        "register": dm.register(machine),
        "register_human": dm.register(human),
        "note_s": dm.note_length_s(machine),
        "note_s_human": dm.note_length_s(human),
        "held_to_max": dm.held_to(machine, chosen.max_note_s),
        "held_to_max_human": dm.held_to(human, chosen.max_note_s),
        "loudness": dm.loudness(player, machine),
        "loudness_human": dm.loudness(player, human),
        "_parts": (player, machine, human),
    }


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over the performances (density ratios: total onsets over total onsets)."""
    summary: dict[str, Any] = {"performances": len(rows)}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in rows if r[key] is not None and not math.isnan(r[key])]
        summary[key] = float(np.mean(values)) if values else None
    human = sum(r["human_notes"] for r in rows)
    if human:
        summary["density_ratio"] = sum(r["machine_notes"] for r in rows) / human
        summary["density_ratio_deaf"] = sum(r["deaf_notes"] for r in rows) / human
    summary["hanging"] = sum(r["hanging"] for r in rows)
    return summary


# Sources -------------------------------------------------------------------------------------


def performances(
    source: Path, args: argparse.Namespace, command: str = "eval-duet"
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, notes [N, 4]) of each performance of ``source``: a corpus's split, or the MIDI
    files of a folder (of its held-out pieces with ``--piece-by``); a file that cannot be read
    is skipped with a line naming the ``command`` reading it."""
    from antiphon.daemon.tools.turns_eval import midi_performances

    if (source / "corpus.json").is_file():
        from antiphon.training.corpus import load_split

        for name, array in load_split(source, args.corpus_split)[: args.limit]:
            yield name, np.asarray(array, np.float64)[:, :4]
        return
    if not source.exists():
        raise DuetEvalError(f"{source}: no such corpus, folder or file")
    target: Path | list[Path] = source
    if args.piece_by is not None and source.is_dir():
        target = held_out_files(
            source, args.piece_by, args.seed, args.corpus_split, args.one_per_piece
        )
    paths = target if isinstance(target, list) else [target]
    taken = 0
    for path in paths:
        for name, notes in midi_performances(path, None, command):
            if args.limit is not None and taken >= args.limit:
                return
            taken += 1
            yield name, np.asarray([tuple(n) for n in notes], np.float64).reshape(-1, 4)


def held_out_files(
    folder: Path, piece_by: str, seed: int, split: str, one_per_piece: bool = False
) -> list[Path]:
    """The MIDI files of ``folder`` whose piece ``antiphon corpus`` (``--piece-by``,
    ``--seed``) puts in ``split`` (``one_per_piece``: the first performance of each)."""
    from antiphon.training.corpus import folder_sources, split_pieces

    sources = [s for s in folder_sources(folder, piece_by) if s.origin == "folder"]
    assignment = split_pieces((s.piece for s in sources), seed)
    taken: set[str] = set()
    files = []
    for source in sources:
        if assignment[source.piece] != split or not source.path:
            continue
        if one_per_piece and source.piece in taken:
            continue
        taken.add(source.piece)
        files.append(Path(source.path))
    return files


# Output --------------------------------------------------------------------------------------


def draw(parts: tuple[np.ndarray, np.ndarray, np.ndarray], output: Path, title: str) -> None:
    """A piano roll of one excerpt: the player, Antiphon's duet part, the real part below."""
    import matplotlib

    matplotlib.use("Agg")
    from antiphon.daemon.tools.plot import ANTIPHON_COLOUR, PLAYER_COLOUR
    from matplotlib import pyplot
    from matplotlib.patches import Patch

    colours = (PLAYER_COLOUR, ANTIPHON_COLOUR, "#3a3a3a")
    labels = ("player", "Antiphon (duet)", "real part below")
    figure, axes_pair = pyplot.subplots(2, 1, figsize=(16, 7), dpi=100, sharex=True, sharey=True)
    for axes, shown, caption in (
        (axes_pair[0], (0, 1), "player + Antiphon"),
        (axes_pair[1], (0, 2), "player + the real part"),
    ):
        for index in shown:
            for pitch, on_s, off_s, velocity in parts[index]:
                axes.broken_barh(
                    [(on_s, max(off_s - on_s, 0.02))],
                    (pitch - 0.4, 0.8),
                    facecolors=colours[index],
                    alpha=0.35 + 0.65 * velocity / 127,
                    edgecolors=colours[index],
                    linewidth=0.5,
                )
        axes.set_ylabel("pitch")
        axes.set_title(caption, fontsize=9, loc="left")
        axes.grid(axis="x", alpha=0.25)
    axes_pair[1].set_xlabel("seconds")
    axes_pair[0].legend(
        handles=[
            Patch(color=c, label=f"{label} ({len(p)} notes)")
            for c, label, p in zip(colours, labels, parts, strict=True)
        ],
        loc="upper right",
        ncols=3,
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(output)
    pyplot.close(figure)


def format_summary(name: str, summary: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [f"{name}: {summary['performances']} performances, {summary['hanging']} hanging"]
    if "player_event_ms_p99" in summary:
        lines.append(
            f"  per player event: p50 {summary['player_event_ms_p50']:.3f} ms, "
            f"p99 {summary['player_event_ms_p99']:.3f} ms, "
            f"max {summary['player_event_ms_max']:.3f} ms"
        )
    if "note_feed_ms_p99" in summary:
        lines.append(
            f"  a note-on entering the state: p50 {summary['note_feed_ms_p50']:.3f} ms, "
            f"p99 {summary['note_feed_ms_p99']:.3f} ms, "
            f"max {summary['note_feed_ms_max']:.3f} ms"
        )
    rows = ("density_ratio", "pulse_share", "consonance", "overlap", "register", "note_s")
    for row in (*rows, "held_to_max", "loudness"):
        cells = [f"{row:14}"]
        for suffix in ("", "_human", "_deaf"):
            cells.append(f"{suffix.strip('_') or 'duet'} {shown(summary.get(row + suffix))}")
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


# Command --------------------------------------------------------------------------------------


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The performances to play in (what :func:`performances` reads): sources, and a split of
    them by piece."""
    parser.add_argument("sources", type=Path, nargs="+", metavar="CORPUS_DIR_OR_MIDI_FOLDER")
    parser.add_argument(
        "--corpus-split", default="test", choices=["test", "validation", "train"],
        help="the split of a corpus, or of a folder with --piece-by (default: test)",
    )  # fmt: skip
    parser.add_argument(
        "--piece-by", default=None, choices=["folder", "file", "prefix"],
        help="split a plain folder by piece as antiphon corpus does, and take --corpus-split",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the corpus seed for --piece-by")
    parser.add_argument(
        "--one-per-piece", action="store_true", help="with --piece-by: one performance a piece"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N performances")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--model", default=str(PIANO_MODEL), help="the ONNX model to play with")
    parser.add_argument(
        "--split", default=None,
        help="the split point (MIDI note; 'lowest': each file's lowest note, Antiphon comps "
        "below the whole line); default: the daemon's duet_split",
    )  # fmt: skip
    parser.add_argument("--duet-density", type=float, default=None)
    parser.add_argument("--duet-velocity", type=float, default=None)
    parser.add_argument("--carry-bars", type=int, default=None)
    parser.add_argument("--groove", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="the summaries")
    parser.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                        help="a piano roll of the first excerpt")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.model.model_file import ModelError
    from antiphon.daemon.tools.turns_eval import replay_settings
    from antiphon.training.corpus import CorpusError

    chosen = {
        name: getattr(args, name)
        for name in ("duet_density", "duet_velocity", "carry_bars", "groove")
        if getattr(args, name) is not None
    }
    split: int | None = None
    report: dict[str, Any] = {}
    try:
        if args.split is not None and args.split != "lowest":
            if not args.split.isdigit():
                raise DuetEvalError(f"--split: a MIDI note number or 'lowest', got {args.split!r}")
            chosen["duet_split"] = int(args.split)
        settings = replay_settings(args.model, "duet", **chosen)
        split = None if args.split == "lowest" else settings.duet_split
        engine = Engine(settings.model, seed=0)
        plotted = args.plot is None
        for source in args.sources:
            rows = []
            event_s: list[float] = []
            feed_s: list[float] = []
            for name, notes in performances(source, args):
                if len(notes) == 0:
                    continue
                row = measure(name, notes, settings, engine, split, event_s, feed_s)
                parts = row.pop("_parts")
                if not plotted:
                    draw(parts, args.plot, f"{name} (split {row['split']})")
                    plotted = True
                rows.append(row)
                print(
                    f"  {Path(name).name}: {row['machine_notes']} duet notes, "
                    f"{row['human_notes']} human, {row['deaf_notes']} deaf",
                    file=sys.stderr,
                )
            summary = summarise(rows)
            if event_s:  # the hot path per player event, in this process (no MIDI I/O)
                ms = 1000.0 * np.asarray(event_s)
                summary["player_event_ms_p50"] = float(np.percentile(ms, 50))
                summary["player_event_ms_p99"] = float(np.percentile(ms, 99))
                summary["player_event_ms_max"] = float(ms.max())
            if feed_s:  # of those, a note-on entering the model's state
                ms = 1000.0 * np.asarray(feed_s)
                summary["note_feed_ms_p50"] = float(np.percentile(ms, 50))
                summary["note_feed_ms_p99"] = float(np.percentile(ms, 99))
                summary["note_feed_ms_max"] = float(ms.max())
            label = source.name + (
                f" ({args.corpus_split})"
                if args.piece_by or (source / "corpus.json").is_file()
                else ""
            )
            print(format_summary(label, summary))
            report[label] = {**summary, "rows": rows}
    except (SettingsError, ModelError, CorpusError, DuetEvalError) as err:
        print(f"antiphon eval-duet: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        settings_used = {k: getattr(settings, k) for k in ("duet_split", "duet_density",
                         "duet_velocity", "carry_bars", "groove", "clock", "turns")}  # fmt: skip
        report["settings"] = {**settings_used, "model": str(settings.model), "split": args.split}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
