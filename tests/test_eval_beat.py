"""``antiphon eval-beat``: the beat tracker against the tempo a file's tempo event says, on
small MIDI files made here (a steady player whose file says its tempo, and the same player in a
file that says another)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from antiphon.daemon.cli import main
from antiphon.training.eval_beat import LEVELS, TOLERANCE, kept_tempo_bpm, level_of
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.midi_files import write_midi
from tests.test_eval_clock import no_beat, steady_eighths


def test_a_steady_player_is_heard_at_the_tempo_the_file_says_and_not_at_another(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    write_midi(folder / "kept.mid", steady_eighths(3, bpm=100.0), bpm=100.0)
    # the same onsets (in seconds), in a file that says 113 bpm: no level of what is played
    write_midi(folder / "misnamed.mid", steady_eighths(3, bpm=100.0), bpm=113.0)
    write_midi(folder / "free.mid", no_beat(4), bpm=100.0)
    out = tmp_path / "beat.json"
    assert main(["eval-beat", str(folder), "--json", str(out)]) == 0
    rows = {Path(r["name"]).name: r for r in json.loads(out.read_text())["takes"]["rows"]}
    kept, misnamed, free = rows["kept.mid"], rows["misnamed.mid"], rows["free.mid"]
    assert kept["tempo_bpm"] == pytest.approx(100.0)
    assert kept["at_tempo"] + kept["double_or_half"] >= 0.8
    assert kept["sure"] >= 0.5 and kept["right_when_sure"] >= 0.9
    assert misnamed["no_level"] >= 0.8 and misnamed["right_when_sure"] == 0.0
    assert free["sure"] < 0.1 and free["at_tempo"] < 0.2


def test_files_without_one_tempo_are_skipped_and_a_corpus_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    write_midi(folder / "no_tempo.mid", steady_eighths(5))
    assert main(["eval-beat", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "no_tempo.mid: no tempo meta event" in captured.err
    assert "no file with a tempo meta event" in captured.out
    with pytest.raises(ValueError, match="no tempo meta event"):
        kept_tempo_bpm(folder / "no_tempo.mid")
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    with pytest.raises(ValueError, match="not a readable MIDI file"):
        kept_tempo_bpm(folder / "broken.mid")
    silent = tmp_path / "silent"
    silent.mkdir()
    write_midi(silent / "no_notes.mid", [], bpm=100.0)
    assert main(["eval-beat", str(silent)]) == 0
    assert "antiphon eval-beat: skipped" in capsys.readouterr().err
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text("{}")
    assert main(["eval-beat", str(corpus)]) == 2
    assert "a corpus keeps no tempo" in capsys.readouterr().err


LEVEL_OF_MULTIPLE = [(name, m) for name, multiples in LEVELS.items() for m in multiples]


@given(
    st.sampled_from(LEVEL_OF_MULTIPLE),
    st.floats(40.0, 300.0),
    st.floats(-0.9 * TOLERANCE, 0.9 * TOLERANCE),
)
def test_a_reading_near_a_multiple_of_the_tempo_is_at_its_level(
    level: tuple[str, float], tempo_bpm: float, off: float
) -> None:
    name, multiple = level
    assert level_of(tempo_bpm * multiple * (1.0 + off), tempo_bpm) == name


@given(st.floats(40.0, 300.0), st.floats(-2.5, 2.5))
def test_a_reading_far_from_every_multiple_is_at_no_level(tempo_bpm: float, octaves: float) -> None:
    ratio = 2.0**octaves
    nearest = min(abs(math.log(ratio / m)) for _, m in LEVEL_OF_MULTIPLE)
    assume(abs(nearest - math.log1p(TOLERANCE)) > 1e-6)
    far = nearest > math.log1p(TOLERANCE)
    assert (level_of(tempo_bpm * ratio, tempo_bpm) == "no_level") == far
