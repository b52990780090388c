"""ABC tunebooks: each tune (an ``X:`` field) read as one score, by symusic's abc2midi.

symusic renders ABC through abc2midi (built into it), which plays repeats and first/second
endings as written and honours the key (``K:``), meter (``M:``), unit length (``L:``) and
tempo (``Q:``) fields, inline changes included; but it reads only the first tune of a text,
and it does not apply a file header's fields as ABC 2.1 says (measured: a header's ``Q:`` is
ignored, and a header's ``L:`` is replaced by the default of the tune's own ``M:``). So a
tunebook is split here, at its ``X:`` fields, and the file header (the field and ``%%``
lines before the first tune) is copied into each tune's header, right after its ``X:``
field, where the tune's own fields follow and override it. Each tune is rendered on its
own, so a tune abc2midi cannot read costs only itself.

Chord symbols (``"Am"``) are left out unless asked for; then abc2midi's accompaniment (a
bass note and the chord on the beats, its default pattern for the meter) is kept as a second
part, moved down whole octaves until it lies below the melody.

abc2midi writes its warnings and errors to the process's stdout; they are caught here (the
first error becomes the reason a tune is skipped) so that they never reach the terminal.
While a tune renders, file descriptors 1 and 2 point at a temporary file, for the whole
process: render tunes from one thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ABC_SUFFIXES = {".abc"}
LOWEST_ACCOMPANIMENT_PITCH = 21  # A0: the accompaniment is not moved below the piano
_TUNE_START = re.compile(r"X:\s*(\S*)")
# File header lines every tune inherits: fields (but a key, which starts a tune's body) and
# directives.
_HEADER_LINE = re.compile(r"(?![KX]:)[A-Za-z]:|%%")
_ERROR_LINE = re.compile(r"^Error(?: in line-char [\d-]+)?\s*:\s*(.*)$", re.MULTILINE)


class UnreadableTune(ValueError):
    """A tune abc2midi cannot render; the message says why."""


@dataclass(frozen=True)
class Tune:
    """One tune of a tunebook.

    Args:
        number: its place in the tunebook, from 1 (``X:`` values need not be unique).
        reference: the value of its ``X:`` field.
        title: its first ``T:`` field, or "".
        line: the line of its ``X:`` field in the file, from 1.
        text: its lines, from the ``X:`` field on.
    """

    number: int
    reference: str
    title: str
    line: int
    text: str

    def label(self) -> str:
        """How a message names it, beside its number: ``X:4 "The Kesh" at line 37``."""
        title = f' "{self.title}"' if self.title else ""
        return f"X:{self.reference}{title} at line {self.line}"


@dataclass(frozen=True)
class Tunebook:
    """A tunebook split into its shared file header and its tunes."""

    header: str
    tunes: tuple[Tune, ...]


def split_tunebook(text: str) -> Tunebook:
    """Split ABC text at its ``X:`` fields. Lines before the first one that are fields or
    ``%%`` directives form the shared header (free text and comments there are dropped). A
    text with no ``X:`` field but a ``K:`` field is read as one tune."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _TUNE_START.match(line)]
    if not starts:
        if any(line.startswith("K:") for line in lines):
            return Tunebook("", (Tune(1, "1", _title(lines), 1, "X:1\n" + text),))
        return Tunebook("", ())
    header = "\n".join(line for line in lines[: starts[0]] if _HEADER_LINE.match(line))
    tunes = []
    for number, (start, end) in enumerate(zip(starts, [*starts[1:], len(lines)], strict=True), 1):
        body = lines[start:end]
        match = _TUNE_START.match(body[0])
        reference = match.group(1) if match else ""
        tunes.append(Tune(number, reference, _title(body), start + 1, "\n".join(body) + "\n"))
    return Tunebook(header, tuple(tunes))


def _title(lines: list[str]) -> str:
    return next((line[2:].strip() for line in lines if line.startswith("T:")), "")


def read_tunebook(path: Path) -> Tunebook:
    """Read and split a tunebook file (UTF-8, or Latin-1 when it is not); OSError if it
    cannot be read."""
    return _read_tunebook(str(path), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_tunebook(path: str, mtime_ns: int) -> Tunebook:
    # Each tune of a book is parsed as its own source (in a pool of processes): the cache
    # spares every process re-reading and re-splitting a book of hundreds of tunes per tune.
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return split_tunebook(text)


def render_tune(header: str, tune: Tune, chords: bool = False) -> Any:
    """A symusic Score (times in seconds) of one tune: its melody, and with ``chords`` its
    chord symbols' accompaniment below it. :class:`UnreadableTune` if abc2midi cannot."""
    melody = _render(header, tune, chords=False)
    if not chords:
        return melody
    full = _render(header, tune, chords=True)
    # abc2midi puts the accompaniment on tracks of its own, in no fixed order among the
    # voices: the tracks the melody-only rendering does not have are the accompaniment.
    voices = [_note_keys(track) for track in melody.tracks]
    accompaniment = []
    for track in full.tracks:
        keys = _note_keys(track)
        if keys in voices:
            voices.remove(keys)
        else:
            accompaniment.append(track)
    shift = _octaves_below(melody, accompaniment)
    for track in accompaniment:
        melody.tracks.append(track.shift_pitch(shift))
    return melody


def _note_keys(track: Any) -> list[tuple[float, int]]:
    return [(round(n.time, 6), n.pitch) for n in track.notes]


def _octaves_below(melody: Any, accompaniment: list[Any]) -> int:
    """Semitones (a multiple of -12) that put the accompaniment below the melody's lowest
    note, without going under :data:`LOWEST_ACCOMPANIMENT_PITCH`."""
    tune_pitches = [n.pitch for track in melody.tracks for n in track.notes]
    chord_pitches = [n.pitch for track in accompaniment for n in track.notes]
    if not tune_pitches or not chord_pitches:
        return 0
    floor, top, bottom = min(tune_pitches), max(chord_pitches), min(chord_pitches)
    shift = 0
    while top + shift >= floor and bottom + shift - 12 >= LOWEST_ACCOMPANIMENT_PITCH:
        shift -= 12
    return shift


def _render(header: str, tune: Tune, chords: bool) -> Any:
    import symusic

    first, _, rest = tune.text.partition("\n")
    directive = "%%MIDI gchordon" if chords else "%%MIDI gchordoff"
    inherited = f"{header}\n" if header else ""
    text = f"{first}\n{inherited}{directive}\n{rest}"
    with _captured_output() as messages:
        try:
            score = symusic.Score.from_abc(text, ttype="second")
        except (RuntimeError, ValueError) as err:
            failure: BaseException | None = err
        else:
            failure = None
    if failure is not None:
        errors = _ERROR_LINE.findall(messages())
        reason = errors[0] if errors else str(failure).strip().splitlines()[0]
        raise UnreadableTune(f"abc2midi cannot read it: {reason}") from failure
    return score


@contextlib.contextmanager
def _captured_output() -> Iterator[Any]:
    """Point file descriptors 1 and 2 at a temporary file; yields a function returning what
    was written there (abc2midi prints with C stdio, which Python's redirection misses)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    captured = ""
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: captured
        finally:
            _flush_c_stdio()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured = sink.read().decode("utf-8", errors="replace")


def _flush_c_stdio() -> None:
    # Without a C library by that name (Windows), its buffers flush when they fill.
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)
