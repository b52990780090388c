"""ABC tunebooks in the corpus: every readable tune a piece, with the notes it holds (repeats
and endings played, key, meter, unit length and tempo honoured), chord symbols only when
asked, a broken tune skipped in one line, and a model trained on a tunebook plays."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
from antiphon.daemon import respond
from antiphon.training.abc import UnreadableTune, render_tune, split_tunebook
from antiphon.training.corpus import (
    SPLITS,
    build_corpus,
    iter_manifest,
    load_split,
    parse_source,
    tunebook_sources,
)
from antiphon.training.expressive import Rendering
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.midi_files import write_eighths
from tests.tiny_abc import CHORDS, TinyTune, tiny_tune, write_tunebook
from tests.tiny_corpus import tiny_train_config

TUNES = 150
BROKEN = (13, 77)


@pytest.fixture(scope="module")
def tunebook(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TinyTune | None]]:
    path = tmp_path_factory.mktemp("abc") / "session tunes.abc"
    return path, write_tunebook(str(path), TUNES, broken_at=BROKEN)


@pytest.fixture(scope="module")
def built(
    tunebook: tuple[Path, list[TinyTune | None]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, folders=[tunebook[0]], seed=1)
    return out


def _tune_number(performance_id: object) -> int:
    return int(str(performance_id).rsplit("/", 1)[1])


def test_every_readable_tune_of_a_tunebook_is_a_piece_with_the_notes_it_holds(
    tunebook: tuple[Path, list[TinyTune | None]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, written = tunebook
    with caplog.at_level(logging.WARNING, logger="antiphon.training.corpus"):
        summary = build_corpus(tmp_path / "out", folders=[path.parent], jobs=2)
    readable = [tune for tune in written if tune is not None]
    assert summary.performances == summary.pieces == len(readable) == TUNES - len(BROKEN)
    assert summary.notes == sum(len(tune.notes) for tune in readable)
    for row in iter_manifest(tmp_path / "out"):
        tune = written[_tune_number(row["id"]) - 1]
        assert tune is not None and row["notes"] == len(tune.notes)
        assert row["seconds"] == pytest.approx(tune.last_end_s - tune.notes[0][1], abs=0.02)
    assert sorted(int(row["tune"]) for row in summary.skipped) == list(BROKEN)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(BROKEN)
    assert all("\n" not in warning and "K: field" in warning for warning in warnings)
    for number in BROKEN:  # named by file and tune, with abc2midi's reason
        assert sum(f"session tunes.abc, tune {number}:" in warning for warning in warnings) == 1


def test_stored_notes_have_the_pitches_and_times_the_tunes_hold(
    tunebook: tuple[Path, list[TinyTune | None]], built: Path
) -> None:
    _, written = tunebook
    seen = 0
    for split in SPLITS:
        for performance_id, notes in load_split(built, split):
            tune = written[_tune_number(performance_id) - 1]
            assert tune is not None
            pitches, onsets = np.asarray(tune.notes).T
            order = np.argsort(notes[:, 1], kind="stable")
            assert notes[order, 0].tolist() == pitches.tolist()
            np.testing.assert_allclose(notes[order, 1], onsets - onsets[0], atol=0.005)
            seen += 1
    assert seen == TUNES - len(BROKEN)


def test_each_tune_is_its_own_piece_and_every_split_gets_some(built: Path) -> None:
    rows = list(iter_manifest(built))
    assert len({row["piece"] for row in rows}) == len(rows)
    assert {row["split"] for row in rows} == set(SPLITS)


def test_chord_symbols_are_a_second_part_below_the_melody_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "chords.abc"
    written = write_tunebook(str(path), 12, chords=True)
    with_chords = sources_notes(path, Rendering(abc_chords=True))
    without = sources_notes(path, Rendering())
    for number, tune in enumerate(written, 1):
        assert tune is not None
        assert len(without[number]) == len(tune.notes)
        if not tune.chords:
            assert len(with_chords[number]) == len(tune.notes)
            continue
        assert len(with_chords[number]) > len(tune.notes)
        book = split_tunebook(path.read_text())
        score = render_tune(book.header, book.tunes[number - 1], chords=True)
        melody, accompaniment = score.tracks[0], list(score.tracks[1:])
        assert len(melody.notes) == len(tune.notes)
        lowest = min(n.pitch for n in melody.notes)
        start = melody.notes[0].time - tune.notes[0][1]
        chord_times = [time_s for time_s, _ in tune.chords]
        for note in (n for track in accompaniment for n in track.notes):
            playing = tune.chords[int(np.searchsorted(chord_times, note.time - start + 0.01)) - 1]
            assert note.pitch % 12 in CHORDS[playing[1]]
            assert note.pitch < lowest


def sources_notes(path: Path, rendering: Rendering) -> dict[int, np.ndarray]:
    return {
        int(source.part or 0): parse_source(source, rendering=rendering).notes
        for source in tunebook_sources(path, "book")
    }


def test_expressive_playing_applies_to_tunes_and_keeps_every_note(tmp_path: Path) -> None:
    path = tmp_path / "book.abc"
    write_tunebook(str(path), 4)
    deadpan = sources_notes(path, Rendering())
    played = sources_notes(path, Rendering(expressive=True, seed=5))
    for number, notes in deadpan.items():
        assert sorted(played[number][:, 0]) == sorted(notes[:, 0])
        assert not np.allclose(played[number][:, 1], np.sort(notes[:, 1]))
        assert len(np.unique(played[number][:, 3])) > 2  # dynamics, not abc2midi's 3 levels


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["1/8", "1/16", "1/4"]), st.booleans())
def test_any_generated_tune_plays_as_written(seed: int, unit: str, header_tempo: bool) -> None:
    # The tune is written for a tunebook whose header says L:1/8 (and no tempo): another
    # header unit length stretches a tune without its own L:, a header tempo one without Q:.
    tune = tiny_tune(1, seed)
    header = f"L:{unit}\n" + ("Q:1/4=90\n" if header_tempo else "")
    scale = 1.0
    if "L:" not in tune.text:
        scale *= {"1/8": 1.0, "1/16": 0.5, "1/4": 2.0}[unit]
    if header_tempo and "Q:" not in tune.text:
        scale *= 120.0 / 90.0
    book = split_tunebook(f"{header}\n{tune.text}")
    assert len(book.tunes) == 1
    notes = render_tune(book.header, book.tunes[0]).tracks[0].notes
    assert [n.pitch for n in notes] == [pitch for pitch, _ in tune.notes]
    played = np.asarray([n.time for n in notes])
    written = np.asarray([onset for _, onset in tune.notes]) * scale
    np.testing.assert_allclose(played - played[0], written - written[0], atol=0.005)


def test_a_header_unit_length_and_tempo_reach_tunes_that_do_not_set_their_own() -> None:
    header = "L:1/4\nQ:1/4=60\n\n"
    for meter in ("2/4", "3/4", "6/8", "4/4"):  # abc2midi alone takes M:'s default length
        book = split_tunebook(f"{header}X:1\nM:{meter}\nK:C\nCDEF|\n")
        notes = render_tune(book.header, book.tunes[0]).tracks[0].notes
        assert [round(n.time - notes[0].time, 3) for n in notes] == [0.0, 1.0, 2.0, 3.0]


tune_line = st.text(alphabet='ABCDEFGabcdefgz2|: []"%T-', max_size=20).filter(
    lambda line: not line.startswith(("X:", "K:"))
)


@given(
    st.lists(st.sampled_from(["L:1/8", "M:3/4", "% a comment", "prose", "%%MIDI program 1"])),
    st.lists(st.lists(tune_line, max_size=4), max_size=8),
)
def test_a_tunebook_splits_into_its_tunes_in_order(
    header: list[str], bodies: list[list[str]]
) -> None:
    tunes = ["\n".join([f"X:{i + 1}", *body]) for i, body in enumerate(bodies)]
    text = "\n".join([*header, *tunes])
    book = split_tunebook(text)
    assert [t.number for t in book.tunes] == list(range(1, len(bodies) + 1))
    assert [t.reference for t in book.tunes] == [str(i + 1) for i in range(len(bodies))]
    for tune, body in zip(book.tunes, bodies, strict=True):
        written = "\n".join([f"X:{tune.number}", *body])
        assert tune.text.endswith("\n") and tune.text.rstrip("\n") == written.rstrip("\n")
    kept = [line for line in header if line in ("L:1/8", "M:3/4", "%%MIDI program 1")]
    assert book.header.splitlines() == (kept if bodies else [])


abc_text = st.text(alphabet="ABCDEFGabcdefgz,'^_=|:[]()1234/<>{}\"-~. \nKLMQVX", max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(abc_text)
def test_any_text_renders_or_is_refused_with_a_reason(text: str) -> None:
    book = split_tunebook("X:1\n" + text)
    for tune in book.tunes:
        try:
            render_tune(book.header, tune, chords=True)
        except UnreadableTune as err:
            assert str(err).startswith("abc2midi cannot read it: ") and "\n" not in str(err)


def test_corpus_command_takes_a_tunebook_quietly_and_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "book.abc"
    written = write_tunebook(str(path), 20, broken_at=(4,))
    command = [sys.executable, "-m", "antiphon.daemon.cli", "corpus", "--jobs", "1"]
    done = subprocess.run(
        [*command, str(path), "--out", str(tmp_path / "out"), "--abc-chords"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("corpus: 19 pieces, 19 performances,")
    assert done.stdout.count("\n") == 1  # abc2midi's chatter never reaches the terminal
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "book.abc, tune 4:" in errors[0]
    melody_notes = sum(len(tune.notes) for tune in written if tune is not None)
    assert int(done.stdout.split(" notes")[0].rsplit(" ", 1)[1]) == melody_notes  # no chords
    (tmp_path / "notes.txt").write_text("not a tunebook\n")
    for bad in ("notes.txt", "missing.abc"):
        refused = subprocess.run(
            [*command, str(tmp_path / bad), "--out", str(tmp_path / "out2")],
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert refused.stderr.startswith("antiphon corpus: ")


def test_a_model_trained_on_a_tunebook_plays(tmp_path: Path) -> None:
    from antiphon.training.export import export_checkpoint
    from antiphon.training.train import train

    write_tunebook(str(tmp_path / "book.abc"), 30)
    corpus = tmp_path / "corpus"
    build_corpus(corpus, folders=[tmp_path / "book.abc"], rendering=Rendering(expressive=True))
    config = tiny_train_config(corpus, tmp_path / "run", epochs=3, layers=1, warmup_steps=5)
    progress = train(config)
    assert progress.step > 0 and np.isfinite(progress.validation[-1]["bits_per_token"])
    model = export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "abc.onnx")
    write_eighths(tmp_path / "call.mid", [67, 69, 71, 72, 74, 72, 71, 69])
    parser = argparse.ArgumentParser()
    respond.add_arguments(parser)
    args = [str(tmp_path / "call.mid"), "-o", str(tmp_path / "reply.mid")]
    assert respond.run(parser.parse_args([*args, "--model", str(model), "--seed", "1"])) == 0
    reply = mido.MidiFile(tmp_path / "reply.mid")
    ons = [m for m in reply.tracks[0] if m.type == "note_on" and m.velocity > 0]
    assert ons  # it answered with notes
