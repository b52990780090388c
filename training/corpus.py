"""The training corpus: MIDI performances found, parsed, split by piece and stored.

Sources are .mid/.midi files, ABC tunebooks (.abc, each tune a piece of its own; see
:mod:`antiphon.training.abc`) and audio recordings (transcribed, see
:mod:`antiphon.training.transcription`), given as files or folders searched recursively,
and the music21 package's public corpus (Bach chorales, folk tune collections) rendered to MIDI.
A :class:`Rendering` can keep a single melodic line of each source (a chorale's soprano, a
piano piece's top line) and play rendered scores with expressive timing and loudness
(:mod:`antiphon.training.expressive`). Each performance is stored as its sounding notes
(sustain pedal applied, see :mod:`antiphon.daemon.codec`), not as tokens, so training can
augment (transpose, stretch, jitter) before encoding.

Files are parsed with symusic (a C++ MIDI parser, about a hundred times faster than a pure
Python one), in a pool of processes. A file (or a tunebook's tune) that cannot be used is
skipped with one warning line naming it and the reason; the build carries on and its summary
counts the skips.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.daemon.codec import (
    PEDAL,
    SUSTAIN_CC,
    CodecConfig,
    KeyEvent,
    key_events_to_notes,
    notes_array,
)
from antiphon.training.abc import ABC_SUFFIXES, UnreadableTune, read_tunebook, render_tune
from antiphon.training.audio import AUDIO_SUFFIXES, AudioError
from antiphon.training.expressive import Rendering, perform, top_line

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MIDI_SUFFIXES = {".mid", ".midi"}
DEFAULT_MUSIC21 = ("bach", "essenFolksong", "ryansMammoth", "oneills1850")


class CorpusError(ValueError):
    """A corpus folder that cannot be read."""


class SkippedFile(ValueError):
    """A source that holds no usable performance; the message says why."""


@dataclass(frozen=True)
class Source:
    """One performance to parse: a MIDI file, a tune of an ABC tunebook, a recording, or a
    work of the music21 corpus."""

    id: str
    piece: str
    origin: str  # "folder" (a MIDI file), "abc", "audio" or "music21"
    path: str
    # The tune inside a tunebook: from 1 for "abc", from 0 inside a music21 opus.
    part: int | None = None

    def where(self) -> str:
        """How a message names it: the file, and the tune when it is one of a tunebook."""
        if self.part is None:
            return self.path
        return f"{self.path}, tune {self.part + (self.origin == 'music21')}"


@dataclass
class Performance:
    source: Source
    notes: np.ndarray  # float32 [N, 4]: pitch, onset_s, offset_s, velocity

    @property
    def seconds(self) -> float:
        return float(self.notes[:, 2].max()) if len(self.notes) else 0.0


@dataclass
class CorpusSummary:
    pieces: int = 0
    performances: int = 0
    notes: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        rate = (self.performances + len(self.skipped)) / max(self.seconds, 1e-9)
        return (
            f"corpus: {self.pieces} pieces, {self.performances} performances, "
            f"{self.notes} notes, {len(self.skipped)} skipped, {self.seconds:.1f} s "
            f"({rate:.0f} files/s)"
        )


# Finding sources ------------------------------------------------------------------------


def folder_sources(root: Path, piece_by: str = "file") -> list[Source]:
    """Every MIDI file, every tune of every ABC tunebook and every audio recording under
    ``root`` (a folder, or one such file). ``piece_by='folder'`` makes a file's folder its
    piece (several performances of one piece, as in ASAP and MAESTRO-like layouts);
    ``piece_by='prefix'`` makes the file name's part before its first ``_`` the piece
    (jazz-solos-dev's ``<Soloist>_<Title>.mid``: one soloist, one piece); a tune is always
    a piece of its own."""
    suffixes = MIDI_SUFFIXES | ABC_SUFFIXES | AUDIO_SUFFIXES
    if root.is_file() and root.suffix.lower() in suffixes:
        paths, base = [root], root.parent
    elif root.is_dir():
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
        base = root
    elif root.exists():
        known = ", ".join(sorted(suffixes))
        raise CorpusError(f"{root}: not a folder, nor a file of a known kind ({known})")
    else:
        raise CorpusError(f"{root}: not a folder")
    sources = []
    for path in paths:
        rel = path.relative_to(base)
        if path.suffix.lower() in ABC_SUFFIXES:
            sources.extend(tunebook_sources(path, f"{base.name}/{rel.with_suffix('').as_posix()}"))
            continue
        piece = rel.parent if piece_by == "folder" and rel.parent != Path(".") else rel
        if piece_by == "prefix":
            # The name before the first "_": jazz-solos-dev's soloist, whose habits are
            # shared by all their solos, so they must not span two splits.
            piece = rel.parent / rel.name.split("_", 1)[0]
        sources.append(
            Source(
                id=f"{base.name}/{rel.with_suffix('').as_posix()}",
                piece=f"{base.name}/{piece.with_suffix('').as_posix()}",
                origin="audio" if path.suffix.lower() in AUDIO_SUFFIXES else "folder",
                path=str(path),
            )
        )
    return sources


def tunebook_sources(path: Path, name: str) -> list[Source]:
    """One source per tune of an ABC tunebook, each its own piece (``NAME/NUMBER``); one
    source for the whole file when it cannot be read or holds no tune, so that the build
    skips it with its reason."""
    try:
        tunes = read_tunebook(path).tunes
    except OSError:
        tunes = ()
    if not tunes:
        return [Source(name, name, "abc", str(path))]
    return [
        Source(f"{name}/{tune.number}", f"{name}/{tune.number}", "abc", str(path), tune.number)
        for tune in tunes
    ]


def music21_sources(collections: Sequence[str], limit: int | None = None) -> list[Source]:
    """Works of the music21 corpus in the named collections (composers or folders).

    A collection may be written ``NAME:COUNT`` to take at most COUNT works from it; ``limit``
    bounds the total.
    """
    from music21 import converter, corpus
    from music21.stream import Opus

    sources: list[Source] = []
    for item in collections:
        name, _, count_text = item.partition(":")
        try:
            count = int(count_text) if count_text else None
        except ValueError as err:
            raise CorpusError(f"music21 collection '{item}': COUNT is not a number") from err
        taken = len(sources)
        paths = corpus.getComposer(name)
        if not paths:
            raise CorpusError(f"music21 corpus has no collection '{name}'")
        for path in sorted(paths):
            stem = Path(path).stem
            if Path(path).suffix.lower() == ".abc":
                # An abc file is an opus of many tunes; each tune is a piece of its own.
                opus = converter.parse(path)
                tunes = len(opus.scores) if isinstance(opus, Opus) else 1
                parts: list[int | None] = list(range(tunes))
            else:
                parts = [None]
            for part in parts:
                tag = stem if part is None else f"{stem}/{part}"
                sources.append(
                    Source(
                        f"music21/{name}/{tag}", f"music21/{name}/{tag}", "music21", str(path), part
                    )
                )
                if limit is not None and len(sources) >= limit:
                    return sources
                if count is not None and len(sources) - taken >= count:
                    break
            if count is not None and len(sources) - taken >= count:
                break
    return sources


# Parsing -------------------------------------------------------------------------------


def score_notes(score: object, include_drums: bool = False) -> np.ndarray:
    """Sounding notes of a symusic Score (in seconds), all tracks merged, pedal applied."""
    events: list[KeyEvent] = []
    for track in score.tracks:  # type: ignore[attr-defined]
        if track.is_drum and not include_drums:
            continue
        for n in track.notes:
            events.append(KeyEvent(n.time, n.pitch, n.velocity))
            events.append(KeyEvent(n.time + n.duration, n.pitch, 0))
        for c in track.controls:
            if c.number == SUSTAIN_CC:
                events.append(KeyEvent(c.time, PEDAL, c.value))
    # At equal times: pedal changes first, then note-offs, then note-ons.
    events.sort(key=lambda e: (e.time_s, e.pitch != PEDAL, e.velocity > 0))
    notes = notes_array(key_events_to_notes(events)).astype(np.float32)
    if len(notes):
        notes[:, 1:3] -= notes[:, 1].min()
    return notes


def parse_source(
    source: Source,
    include_drums: bool = False,
    rendering: Rendering | None = None,
    transcriptions: Path | None = None,
) -> Performance:
    """Parse one source; :class:`SkippedFile` says why it cannot be used. An audio source is
    transcribed (one line at a time with ``rendering.single_line``), through the cache of
    finished transcriptions in the folder ``transcriptions`` when given."""
    import symusic

    rendering = rendering or Rendering()
    if source.origin == "audio":
        return _finish(source, _transcribe(source, rendering, transcriptions), rendering)
    try:
        if source.origin == "abc":
            score = _render_abc(source, rendering.abc_chords)
        elif source.origin == "music21":
            midi = _render_music21(source, rendering.single_line)
            score = symusic.Score.from_midi(midi, ttype="second")
        else:
            score = symusic.Score(source.path, ttype="second")
    except UnreadableTune as err:
        raise SkippedFile(str(err)) from err
    except (RuntimeError, ValueError, OSError) as err:
        raise SkippedFile(f"not a readable MIDI file ({_first_line(err)})") from err
    except _music21_error() as err:
        raise SkippedFile(f"music21 cannot render it ({_first_line(err)})") from err
    return _finish(source, score_notes(score, include_drums), rendering)


def _finish(source: Source, notes: np.ndarray, rendering: Rendering) -> Performance:
    if rendering.single_line:
        notes = top_line(notes)
    if rendering.expressive:
        notes = perform(notes, rendering.rng_for(source.id))
    if len(notes) == 0:
        raise SkippedFile("no notes")
    return Performance(source, notes)


def _transcribe(source: Source, rendering: Rendering, transcriptions: Path | None) -> np.ndarray:
    from antiphon.training.transcription import (
        Transcriber,
        TranscriptionCache,
        TranscriptionError,
        transcribe_cached,
        tuned_settings,
    )

    settings = tuned_settings(rendering.single_line)
    transcriber = _TRANSCRIBERS.setdefault(settings, Transcriber(settings))
    cache = TranscriptionCache(transcriptions) if transcriptions is not None else None
    try:
        notes, _ = transcribe_cached(Path(source.path), transcriber, cache)
    except (AudioError, TranscriptionError) as err:
        raise SkippedFile(str(err)) from err
    except OSError as err:
        raise SkippedFile(f"not a readable file ({_first_line(err)})") from err
    except ModuleNotFoundError as err:
        if err.name != "soundfile":
            raise
        suffix = Path(source.path).suffix
        reason = f"{suffix} needs the 'audio' extra: pip install 'antiphon[audio]'"
        raise SkippedFile(reason) from err
    notes = notes.copy()
    if len(notes):
        notes[:, 1:3] -= notes[:, 1].min()
    return notes


# One transcriber (and its ONNX session) per process and settings, kept between sources.
_TRANSCRIBERS: dict[object, Any] = {}


def _render_abc(source: Source, chords: bool) -> object:
    try:
        book = read_tunebook(Path(source.path))
    except OSError as err:
        raise SkippedFile(f"not a readable file ({_first_line(err)})") from err
    if source.part is None or not 1 <= source.part <= len(book.tunes):
        raise SkippedFile("no tunes (no X: field)")
    tune = book.tunes[source.part - 1]
    try:
        return render_tune(book.header, tune, chords)
    except UnreadableTune as err:
        raise UnreadableTune(f"{tune.label()}: {err}") from err


def _music21_error() -> type[Exception]:
    """The base of music21's own errors (badly formed repeats in a folk tune, say)."""
    from music21.exceptions21 import Music21Exception

    return Music21Exception


def _render_music21(source: Source, single_line: bool = False) -> bytes:
    from music21 import converter, midi
    from music21.stream import Opus, Score, Stream

    parsed: Stream = converter.parse(source.path)
    if source.part is not None and isinstance(parsed, Opus):
        parsed = parsed.scores[source.part]
    if single_line and isinstance(parsed, Score) and len(parsed.parts) > 1:
        parsed = parsed.parts[0]  # the top part: a chorale's soprano
    data: bytes = midi.translate.streamToMidiFile(parsed).writestr()
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


ParseResult = Performance | tuple[Source, str]


def _parse_or_reason(args: tuple[Source, bool, Rendering, Path | None]) -> ParseResult:
    source, include_drums, rendering, transcriptions = args
    try:
        return parse_source(source, include_drums, rendering, transcriptions)
    except SkippedFile as err:
        return source, str(err)


def parse_all(
    sources: Sequence[Source],
    include_drums: bool = False,
    jobs: int = 1,
    progress: Callable[[Iterable[ParseResult], int], Iterable[ParseResult]] | None = None,
    rendering: Rendering | None = None,
    transcriptions: Path | None = None,
) -> tuple[list[Performance], list[tuple[Source, str]]]:
    """Parse sources (in ``jobs`` processes); returns performances and (source, reason) skips.
    Audio sources are transcribed through the cache folder ``transcriptions``, if given."""
    work = [(s, include_drums, rendering or Rendering(), transcriptions) for s in sources]
    results: Iterable[ParseResult]
    if jobs > 1 and len(work) > 1:
        pool = ProcessPoolExecutor(max_workers=jobs)
        results = pool.map(_parse_or_reason, work, chunksize=4)
    else:
        pool = None
        results = map(_parse_or_reason, work)
    if progress is not None:
        results = progress(results, len(work))
    performances: list[Performance] = []
    skipped: list[tuple[Source, str]] = []
    try:
        for result in results:
            if isinstance(result, Performance):
                performances.append(result)
            else:
                source, reason = result
                log.warning("skipped %s: %s", source.where(), reason)
                skipped.append((source, reason))
    finally:
        if pool is not None:
            pool.shutdown()
    return performances, skipped


# Splitting and storage -----------------------------------------------------------------


def split_pieces(
    pieces: Iterable[str], seed: int, validation: float = 0.1, test: float = 0.1
) -> dict[str, str]:
    """Assign each piece to a split, reproducibly from ``seed``; never a piece in two splits."""
    ordered = sorted(set(pieces))
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_val = max(1, round(n * validation)) if n >= 3 else 0
    n_test = max(1, round(n * test)) if n >= 3 else 0
    assignment = {}
    for i, piece in enumerate(ordered):
        assignment[piece] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    return assignment


def write_corpus(
    out: Path,
    performances: Sequence[Performance],
    codec: CodecConfig,
    seed: int,
    skipped: Sequence[tuple[Source, str]] = (),
    validation: float = 0.1,
    test: float = 0.1,
    rendering: Rendering | None = None,
) -> CorpusSummary:
    """Write the manifest, one npz per split and corpus.json; returns the counts."""
    out.mkdir(parents=True, exist_ok=True)
    performances = sorted(performances, key=lambda p: p.source.id)
    split_of_piece = split_pieces((p.source.piece for p in performances), seed, validation, test)
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for p in performances:
            row = {
                "id": p.source.id,
                "piece": p.source.piece,
                "source": p.source.origin,
                "path": p.source.path,
                "split": split_of_piece[p.source.piece],
                "notes": len(p.notes),
                "seconds": round(p.seconds, 3),
            }
            manifest.write(json.dumps(row) + "\n")
    counts = {}
    for split in SPLITS:
        chosen = [p for p in performances if split_of_piece[p.source.piece] == split]
        sizes = np.cumsum([0] + [len(p.notes) for p in chosen]).astype(np.int64)
        notes = np.concatenate([p.notes for p in chosen]) if chosen else np.zeros((0, 4))
        np.savez(
            out / f"{split}.npz",
            notes=notes.astype(np.float32),
            offsets=sizes,
            ids=np.asarray([p.source.id for p in chosen], dtype=str),
        )
        counts[split] = {
            "performances": len(chosen),
            "pieces": len({p.source.piece for p in chosen}),
            "notes": int(sizes[-1]),
        }
    summary = CorpusSummary(
        pieces=len(split_of_piece),
        performances=len(performances),
        notes=sum(len(p.notes) for p in performances),
        skipped=[_skip_row(s, reason) for s, reason in skipped],
    )
    info = {
        "codec": json.loads(codec.to_json()),
        "seed": seed,
        "rendering": asdict(rendering or Rendering()),
        "splits": counts,
        "pieces": summary.pieces,
        "performances": summary.performances,
        "notes": summary.notes,
        "skipped": summary.skipped,
    }
    (out / "corpus.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return summary


def _skip_row(source: Source, reason: str) -> dict[str, str]:
    row = {"path": source.path, "reason": reason}
    if source.part is not None:
        row["tune"] = str(source.part)
    return row


def _read_info(corpus_dir: Path) -> dict[str, object]:
    path = corpus_dir / "corpus.json"
    try:
        info: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CorpusError(
            f"{corpus_dir}: not a corpus (no corpus.json; build one with `antiphon corpus`)"
        ) from err
    except (OSError, json.JSONDecodeError) as err:
        raise CorpusError(f"{path}: unreadable ({err})") from err
    return info


def load_codec(corpus_dir: Path) -> CodecConfig:
    """The codec settings a corpus was built with."""
    return CodecConfig.from_json(json.dumps(_read_info(Path(corpus_dir))["codec"]))


def load_split(corpus_dir: Path, split: str) -> list[tuple[str, np.ndarray]]:
    """(id, notes float32 [N, 4]) for every performance of a split, in manifest order."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split '{split}' (one of {', '.join(SPLITS)})")
    _read_info(Path(corpus_dir))
    with np.load(Path(corpus_dir) / f"{split}.npz") as data:
        notes, offsets, ids = data["notes"], data["offsets"], data["ids"]
    return [(str(ids[i]), notes[offsets[i] : offsets[i + 1]]) for i in range(len(ids))]


def iter_manifest(corpus_dir: Path) -> Iterator[dict[str, object]]:
    with (Path(corpus_dir) / "manifest.jsonl").open(encoding="utf-8") as manifest:
        for line in manifest:
            yield json.loads(line)


def build_corpus(
    out: Path,
    folders: Sequence[Path] = (),
    music21_collections: Sequence[str] = (),
    music21_limit: int | None = None,
    piece_by: str = "file",
    codec: CodecConfig | None = None,
    seed: int = 0,
    jobs: int = 1,
    progress: Callable[[Iterable[ParseResult], int], Iterable[ParseResult]] | None = None,
    rendering: Rendering | None = None,
) -> CorpusSummary:
    """Find, parse, split and store a corpus; the summary holds counts and the time taken.
    Recordings are transcribed once: finished transcriptions are kept in
    ``out/transcriptions`` for the next build."""
    codec = codec or CodecConfig()
    started = time.perf_counter()
    sources: list[Source] = []
    for folder in folders:
        sources.extend(folder_sources(Path(folder), piece_by))
    if music21_collections:
        sources.extend(music21_sources(music21_collections, music21_limit))
    if not sources:
        raise CorpusError("no MIDI files, ABC tunebooks or recordings found in the given sources")
    rendering = rendering or Rendering(seed=seed)
    performances, skipped = parse_all(
        sources, codec.include_drums, jobs, progress, rendering, Path(out) / "transcriptions"
    )
    summary = write_corpus(out, performances, codec, seed, skipped, rendering=rendering)
    summary.seconds = time.perf_counter() - started
    return summary
