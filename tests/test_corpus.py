"""The corpus builder: bad files skipped with a warning each, splits by piece, readable output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
from antiphon.training.corpus import (
    SPLITS,
    build_corpus,
    iter_manifest,
    load_codec,
    load_split,
    split_pieces,
)
from hypothesis import given
from hypothesis import strategies as st

from .test_codec import write_performance_file


def make_folder(root: Path) -> None:
    """Six pieces with two performances each, and one broken file of every kind."""
    for piece in range(6):
        for performer in range(2):
            folder = root / f"composer/piece{piece}"
            folder.mkdir(parents=True, exist_ok=True)
            write_performance_file(
                folder / f"performer{performer}.mid", seed=piece * 10 + performer
            )
    bad = root / "composer/bad"
    bad.mkdir()
    (bad / "empty.mid").write_bytes(b"")
    (bad / "text.midi").write_text("this is not a MIDI file\n")
    good = (root / "composer/piece0/performer0.mid").read_bytes()
    (bad / "truncated.mid").write_bytes(good[: len(good) // 3])
    silent = mido.MidiFile()
    silent.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    silent.save(bad / "no_notes.mid")


def test_bad_files_are_skipped_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_folder(tmp_path / "midi")
    with caplog.at_level(logging.WARNING, logger="antiphon.training.corpus"):
        summary = build_corpus(tmp_path / "out", folders=[tmp_path / "midi"], piece_by="folder")
    assert summary.performances == 12
    assert summary.pieces == 6
    skipped = {Path(s["path"]).name: s["reason"] for s in summary.skipped}
    assert set(skipped) == {"empty.mid", "text.midi", "truncated.mid", "no_notes.mid"}
    assert skipped["no_notes.mid"] == "no notes"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert all(w.startswith("skipped ") and "\n" not in w for w in warnings)
    assert "4 skipped" in summary.line()


def test_performances_of_one_piece_stay_in_one_split(tmp_path: Path) -> None:
    make_folder(tmp_path / "midi")
    build_corpus(tmp_path / "out", folders=[tmp_path / "midi"], piece_by="folder", seed=3)
    split_of_piece: dict[object, set[object]] = {}
    for row in iter_manifest(tmp_path / "out"):
        split_of_piece.setdefault(row["piece"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_piece.values())
    assert {s for splits in split_of_piece.values() for s in splits} == set(SPLITS)


def test_piece_by_prefix_keeps_each_soloists_solos_in_one_split(tmp_path: Path) -> None:
    folder = tmp_path / "solos"
    folder.mkdir()
    for soloist in range(6):
        for title in ("Blues", "Ballad-1", "Ballad-2"):
            path = folder / f"Soloist{soloist}_{title}.mid"
            write_performance_file(path, seed=soloist * 10 + len(title))
    summary = build_corpus(tmp_path / "out", folders=[folder], piece_by="prefix", seed=1)
    assert (summary.pieces, summary.performances) == (6, 18)
    split_of_piece: dict[object, set[object]] = {}
    for row in iter_manifest(tmp_path / "out"):
        assert row["piece"] == "solos/" + Path(str(row["path"])).name.split("_")[0]
        split_of_piece.setdefault(row["piece"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_piece.values())
    assert {s for splits in split_of_piece.values() for s in splits} == set(SPLITS)


def test_stored_notes_read_back_per_performance(tmp_path: Path) -> None:
    make_folder(tmp_path / "midi")
    build_corpus(tmp_path / "out", folders=[tmp_path / "midi"], piece_by="folder")
    manifest = {row["id"]: row for row in iter_manifest(tmp_path / "out")}
    total = 0
    for split in SPLITS:
        for performance_id, notes in load_split(tmp_path / "out", split):
            assert manifest[performance_id]["split"] == split
            assert notes.shape == (manifest[performance_id]["notes"], 4)
            assert notes[:, 1].min() == 0.0
            assert np.all(notes[:, 2] >= notes[:, 1])
            total += len(notes)
    assert total == sum(int(row["notes"]) for row in manifest.values())  # type: ignore[call-overload]
    assert load_codec(tmp_path / "out").time_shift_bins == 96


@given(st.sets(st.text(min_size=1, max_size=8), min_size=3, max_size=60), st.integers(0, 2**16))
def test_split_is_reproducible_and_covers_every_piece(pieces: set[str], seed: int) -> None:
    first = split_pieces(pieces, seed)
    assert first == split_pieces(sorted(pieces, reverse=True), seed)
    assert set(first) == pieces
    assert {"validation", "test"} <= set(first.values())


def test_music21_corpus_renders_to_performances(tmp_path: Path) -> None:
    summary = build_corpus(tmp_path / "out", music21_collections=["bach"], music21_limit=3)
    assert summary.performances == 3
    assert summary.notes > 100
    rows = list(iter_manifest(tmp_path / "out"))
    assert all(row["source"] == "music21" for row in rows)


def test_corpus_command_prints_a_summary_and_refuses_a_missing_folder(tmp_path: Path) -> None:
    make_folder(tmp_path / "midi")
    command = [
        sys.executable,
        "-m",
        "antiphon.daemon.cli",
        "corpus",
        "--piece-by",
        "folder",
        "--jobs",
        "2",
    ]
    done = subprocess.run(
        [*command, str(tmp_path / "midi"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("corpus: 6 pieces, 12 performances,")
    assert "4 skipped" in done.stdout
    assert "Traceback" not in done.stderr
    info = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert len(info["skipped"]) == 4
    missing = subprocess.run(
        [*command, str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0
    assert "not a folder" in missing.stderr
