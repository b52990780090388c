"""``antiphon plot``: a recorded session becomes a piano roll in two colours."""

from __future__ import annotations

import argparse
from pathlib import Path

import mido
import numpy as np
import pytest
from antiphon.daemon.stage.recorder import SessionRecorder
from antiphon.daemon.tools import plot
from antiphon.daemon.tools.plot import Session, read_session, turns

from tests.jack_server import recorded_call

image = pytest.importorskip("matplotlib.image")


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def main(argv: list[str]) -> int:
    """``antiphon plot ARGV`` (the command's own parser and run, as the CLI calls them)."""
    parser = argparse.ArgumentParser(prog="antiphon plot")
    plot.add_arguments(parser)
    return plot.run(parser.parse_args(argv[1:]))


def record_session(folder: Path, with_replies: bool = True) -> Path:
    """Two calls (the hand-played phrase from tests/data) and, if asked, a reply to each."""
    clock = Clock()
    recorder = SessionRecorder(folder, clock=clock)
    recorder.start()
    call = recorded_call()
    for call_start_s in (0.5, 8.0):
        for timed in call:
            recorder.player(timed.message, call_start_s + timed.time_s)
        if with_replies:
            reply_start_s = call_start_s + call[-1].time_s + 0.4
            for i, pitch in enumerate((72, 74, 76, 79, 77, 76, 74, 72)):
                onset_s = reply_start_s + 0.3 * i
                recorder.antiphon(mido.Message("note_on", note=pitch, velocity=90), onset_s)
                recorder.antiphon(mido.Message("note_off", note=pitch), onset_s + 0.25)
    clock.now_s = 16.0
    recorder.stop()
    return recorder.path


def coloured_pixels(png: Path) -> tuple[int, int]:
    """How many pixels are clearly blue (the player) and clearly orange (Antiphon)."""
    pixels = image.imread(png)[..., :3]
    red, blue = pixels[..., 0], pixels[..., 2]
    return int(np.sum(blue - red > 0.3)), int(np.sum(red - blue > 0.4))


def test_a_recorded_session_is_read_as_calls_and_replies(tmp_path: Path) -> None:
    session = read_session(record_session(tmp_path))
    assert len(session.player) == 2 * 14
    assert len(session.antiphon) == 2 * 8
    assert [(t.party, t.number) for t in turns(session)] == [
        ("call", 1),
        ("reply", 1),
        ("call", 2),
        ("reply", 2),
    ]


def test_plot_writes_a_png_with_both_parties_in_their_colours(tmp_path: Path) -> None:
    png = tmp_path / "roll.png"
    assert main(["plot", str(record_session(tmp_path)), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = image.imread(png).shape[:2]
    assert width >= 800 and height >= 400
    player_pixels, antiphon_pixels = coloured_pixels(png)
    assert player_pixels > 2000 and antiphon_pixels > 2000


def test_a_session_without_replies_has_no_antiphon_colour(tmp_path: Path) -> None:
    png = tmp_path / "roll.png"
    assert main(["plot", str(record_session(tmp_path, with_replies=False)), "-o", str(png)]) == 0
    player_pixels, antiphon_pixels = coloured_pixels(png)
    assert player_pixels > 2000
    assert antiphon_pixels < 500  # the legend's swatch only


def test_a_window_of_the_session_can_be_drawn(tmp_path: Path) -> None:
    png = tmp_path / "window.png"
    session = record_session(tmp_path)
    assert main(["plot", str(session), "-o", str(png), "--start", "7", "--end", "14"]) == 0
    assert image.imread(png).shape[1] >= 800


@pytest.mark.parametrize("content", [b"", b"MThd garbage", b"\x00" * 100])
def test_a_file_that_is_not_midi_is_refused_in_one_line(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    assert main(["plot", str(bad), "-o", str(tmp_path / "x.png")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("antiphon plot:") and "\n" not in error
    assert not (tmp_path / "x.png").exists()


def test_unanswered_calls_are_told_apart_by_the_silence_between_them(tmp_path: Path) -> None:
    session = read_session(record_session(tmp_path, with_replies=False))
    assert [(t.party, t.number) for t in turns(session)] == [("call", 1), ("call", 2)]
    assert turns(Session(player=[], antiphon=[])) == []
