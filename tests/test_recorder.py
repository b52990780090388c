"""Session recording: two tracks that mido reads back, written while the session goes on."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import mido
import pytest
from antiphon.daemon.stage.recorder import TRACK_NAMES, RecorderError, SessionRecorder, session_path
from hypothesis import given, settings
from hypothesis import strategies as st

START = datetime(2025, 5, 1, 21, 30, 5)


class Clock:
    """A clock the test moves by hand: the recorder is driven without sleeps."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def timed_messages(path: Path) -> list[list[tuple[float, mido.Message]]]:
    """Each track's channel messages with their times in seconds (tempo from track 0)."""
    midi = mido.MidiFile(path)
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    tracks = []
    for track in midi.tracks:
        tick = 0
        timed = []
        for message in track:
            tick += message.time
            if not message.is_meta:
                seconds = mido.tick2second(tick, midi.ticks_per_beat, tempo)
                timed.append((seconds, message.copy(time=0)))
        tracks.append(timed)
    return tracks


def recorder(tmp_path: Path, clock: Clock, flush_s: float = 3600.0) -> SessionRecorder:
    return SessionRecorder(tmp_path / "sessions", clock=clock, flush_s=flush_s, now=lambda: START)


def test_both_parties_land_in_their_own_track_at_their_times(tmp_path: Path) -> None:
    clock = Clock()
    rec = recorder(tmp_path, clock)
    rec.start()
    rec.player(mido.Message("note_on", note=60, velocity=90), 1000.5)
    rec.player(mido.Message("control_change", control=64, value=127), 1000.6)
    rec.player(mido.Message("note_off", note=60), 1001.0)
    rec.antiphon(mido.Message("note_on", channel=1, note=67, velocity=70), 1001.4)
    rec.antiphon(mido.Message("note_off", channel=1, note=67), 1002.25)
    rec.player(mido.Message("clock"), 1001.5)  # not a performance message: left out
    clock.now_s = 1003.0
    rec.stop()

    assert rec.path == tmp_path / "sessions" / "antiphon-2025-05-01-213005.mid"
    midi = mido.MidiFile(rec.path)
    assert midi.type == 1
    assert [t.name for t in midi.tracks] == list(TRACK_NAMES)
    player, antiphon = timed_messages(rec.path)
    assert [(round(t, 3), m.type, m.bytes()) for t, m in player] == [
        (0.5, "note_on", [0x90, 60, 90]),
        (0.6, "control_change", [0xB0, 64, 127]),
        (1.0, "note_off", [0x80, 60, 64]),
    ]
    assert [(round(t, 3), m.bytes()) for t, m in antiphon] == [
        (1.4, [0x91, 67, 70]),
        (2.25, [0x81, 67, 64]),
    ]


def test_the_file_is_valid_in_the_middle_of_a_session(tmp_path: Path) -> None:
    clock = Clock()
    rec = recorder(tmp_path, clock)
    rec.start()
    rec.player(mido.Message("note_on", note=60, velocity=90), 1000.1)
    rec.flush()
    rec.antiphon(mido.Message("note_on", note=64, velocity=80), 1000.9)
    rec.player(mido.Message("note_off", note=60), 1001.0)
    rec.flush()  # what a crash here would leave: both notes in, the reply note still open
    player, antiphon = timed_messages(rec.path)
    assert [m.type for _, m in player] == ["note_on", "note_off"]
    assert [m.note for _, m in antiphon] == [64]
    assert not list(rec.path.parent.glob(".*partial"))  # no temporary file left behind
    clock.now_s = 1002.0
    rec.stop()


def test_stop_releases_what_still_sounds_in_the_file(tmp_path: Path) -> None:
    clock = Clock()
    rec = recorder(tmp_path, clock)
    rec.start()
    rec.player(mido.Message("note_on", note=48, velocity=50), 1000.2)
    rec.antiphon(mido.Message("note_on", channel=3, note=72, velocity=60), 1000.3)
    clock.now_s = 1001.5
    rec.stop()
    player, antiphon = timed_messages(rec.path)
    assert [(round(t, 3), m.type, m.note) for t, m in player][-1] == (1.5, "note_off", 48)
    assert [(m.type, m.channel, m.note) for _, m in antiphon][-1] == ("note_off", 3, 72)


def test_the_background_thread_writes_the_file_every_few_seconds(tmp_path: Path) -> None:
    clock = Clock()
    rec = recorder(tmp_path, clock, flush_s=0.05)
    rec.start()
    first = rec.writes
    rec.player(mido.Message("note_on", note=60, velocity=90), 1000.1)
    deadline_s = time.monotonic() + 5.0  # a loaded machine; normally one or two periods
    while not timed_messages(rec.path)[0] and time.monotonic() < deadline_s:
        time.sleep(0.02)  # nobody calls flush(): only the recorder's thread can write it
    assert rec.writes > first
    assert [m.note for _, m in timed_messages(rec.path)[0]] == [60]
    rec.stop()


def test_a_new_session_never_overwrites_an_old_one(tmp_path: Path) -> None:
    first = session_path(tmp_path, START)
    first.write_bytes(b"old")
    second = session_path(tmp_path, START)
    assert second != first and second.name == "antiphon-2025-05-01-213005-2.mid"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_that_cannot_be_written_is_refused_in_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(RecorderError, match="cannot write in the recording folder"):
        SessionRecorder(locked)


def test_a_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RecorderError, match="cannot make the recording folder"):
        SessionRecorder(tmp_path / "file" / "sessions")


message_kinds = st.one_of(
    st.builds(
        lambda c, n, v: mido.Message("note_on", channel=c, note=n, velocity=v),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(
        lambda c, n: mido.Message("note_off", channel=c, note=n),
        st.integers(0, 15),
        st.integers(0, 127),
    ),
    st.builds(
        lambda c, k, v: mido.Message("control_change", channel=c, control=k, value=v),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(
        lambda c, p: mido.Message("pitchwheel", channel=c, pitch=p),
        st.integers(0, 15),
        st.integers(-8192, 8191),
    ),
)


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.booleans(), st.floats(0.0, 600.0), message_kinds), max_size=60
    ).map(lambda es: sorted(es, key=lambda e: e[1]))
)
def test_any_session_reads_back_message_for_message(
    tmp_path_factory: pytest.TempPathFactory, events: list[tuple[bool, float, mido.Message]]
) -> None:
    clock = Clock()
    rec = recorder(tmp_path_factory.mktemp("session"), clock)
    rec.start()
    for is_player, offset_s, message in events:
        (rec.player if is_player else rec.antiphon)(message, clock.now_s + offset_s)
    rec.flush()
    player, antiphon = timed_messages(rec.path)
    rec.stop()
    for track, party in ((player, True), (antiphon, False)):
        sent = [(t, m.bytes()) for p, t, m in events if p == party]
        assert [m.bytes() for _, m in track] == [b for _, b in sent]
        for (read_s, _), (sent_s, _) in zip(track, sent, strict=True):
            assert read_s == pytest.approx(sent_s, abs=0.001)
