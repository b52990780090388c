"""Ableton Link with a real peer: a Link peer in a process of its own
(:mod:`antiphon.daemon.tools.link_peer`) and Antiphon's session meet over the loopback.

They find each other within a second or two. The beats compared here come from one shared
timeline read in two processes, so they agree to microseconds; the tests allow an eighth of
a beat (the right beat, whatever the machine's load does to the readings). Timing figures
are ``antiphon bench link``'s.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator

import mido
import pytest
from antiphon.daemon.musician.clocks.beat_keeper import BeatKeeper
from antiphon.daemon.musician.clocks.clock_out import ClockLeader
from antiphon.daemon.musician.clocks.link_clock import LinkSession, LinkUnavailable, link_installed
from antiphon.daemon.musician.hearing.beat import BeatGrid
from antiphon.daemon.stage.diagnosis import OK, WARN, link_finding
from antiphon.daemon.tools.link_peer import LinkPeer, link_peer

from tests.jack_server import wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(not link_installed(), reason="the link extra is not installed"),
]

FIND_TIMEOUT_S = 10.0
QUANTUM = 4


@pytest.fixture
def session() -> Iterator[LinkSession]:
    ours = LinkSession(120.0)
    try:
        yield ours
    finally:
        ours.close()


def joined(peer: LinkPeer, session: LinkSession, tempo_bpm: float) -> None:
    """Wait until the two see each other, then let the peer set the session's tempo."""
    assert wait_for(lambda: session.peers > 0, FIND_TIMEOUT_S), "no Link peer found"
    assert peer.wait_for_peers(FIND_TIMEOUT_S)
    peer.ask(f"tempo {tempo_bpm}")
    assert wait_for(lambda: abs(session.tempo_bpm - tempo_bpm) < 1e-3, FIND_TIMEOUT_S)


def beats_agree(grid: BeatGrid, peer: LinkPeer, time_s: float) -> float:
    """How far (in beats) ``grid``'s next beat after ``time_s`` is from the peer's beat there."""
    ours_s = grid.next_beat_s(time_s)
    state = peer.ask("state")
    beat = state["beat"] + (ours_s - state["time_s"]) / grid.beat_s
    theirs_s = float(peer.ask(f"time_at {round(beat)}")["time_s"])
    return abs(ours_s - theirs_s) / grid.beat_s


def test_without_peers_there_is_no_link_beat(session: LinkSession) -> None:
    assert session.peers == 0
    assert session.grid(time.monotonic(), QUANTUM) is None


@pytest.mark.parametrize("tempo_bpm", [100.0, 133.0])
def test_antiphon_joins_the_peers_session_and_keeps_its_tempo_and_beat(
    session: LinkSession, tempo_bpm: float
) -> None:
    with link_peer(tempo_bpm) as peer:
        joined(peer, session, tempo_bpm)
        now_s = time.monotonic()
        grid = session.grid(now_s, QUANTUM)
        assert grid is not None and grid.source == "link"
        assert grid.tempo_bpm == pytest.approx(tempo_bpm, abs=1e-3)
        assert grid.anchor_s <= now_s < grid.anchor_s + grid.beat_s
        assert beats_agree(grid, peer, now_s) < 0.125
        # Bars of the quantum: the peer's beat at Antiphon's downbeat is a multiple of it.
        assert grid.bar_anchor_s is not None
        downbeat = session.beat_at(grid.bar_anchor_s + 1e-4, QUANTUM)
        assert downbeat % QUANTUM == pytest.approx(0.0, abs=0.01)


def test_a_peers_change_of_tempo_is_the_next_grid(session: LinkSession) -> None:
    with link_peer(100.0) as peer:
        joined(peer, session, 100.0)
        peer.ask("tempo 133")
        assert wait_for(lambda: abs(session.tempo_bpm - 133.0) < 1e-3, FIND_TIMEOUT_S)
        grid = session.grid(time.monotonic(), QUANTUM)
        assert grid is not None
        assert grid.tempo_bpm == pytest.approx(133.0, abs=1e-3)
        assert beats_agree(grid, peer, time.monotonic()) < 0.125


@pytest.mark.parametrize("reply_start", ["beat", "bar"])
def test_a_reply_starts_on_the_peers_beat_or_bar(session: LinkSession, reply_start: str) -> None:
    keeper = BeatKeeper()
    keeper.link = session
    with link_peer(133.0) as peer:
        joined(peer, session, 133.0)
        now_s = time.monotonic()
        plan = keeper.plan(now_s - 2.0, now_s, now_s, now_s, "link", reply_start, 1.0, QUANTUM)
        assert plan.grid is not None and plan.grid.source == "link"
        assert now_s <= plan.start_s
        beat = session.beat_at(plan.start_s + 1e-4, QUANTUM)
        assert beat == pytest.approx(round(beat), abs=0.01)
        now_beat = session.beat_at(now_s, QUANTUM)
        if reply_start == "bar" and math.ceil(now_beat / QUANTUM) * QUANTUM - now_beat <= 1.0:
            assert round(beat) % QUANTUM == 0  # the next downbeat came within a beat
        else:
            assert round(beat) == math.ceil(now_beat)
        assert keeper.status()["beat_source"] == "link"


def test_the_tempo_antiphon_leads_with_is_the_session_tempo_a_peer_sees(
    session: LinkSession,
) -> None:
    """Link out: the outgoing clock's tempo, set on the beat, is what the peer reads."""
    leader = ClockLeader(1.0, on_tempo=session.set_tempo)
    leader.active = True
    with link_peer(120.0) as peer:
        joined(peer, session, 120.0)
        now_s = time.monotonic()
        leader.offer(BeatGrid(beat_s=60.0 / 104, anchor_s=now_s, source="player"))
        for _ in range(5 * 24):  # five beats, ticked without waiting for them
            due_s = leader.next_due_s(now_s)
            assert due_s is not None
            leader.tick()
        assert leader.tempo_bpm == pytest.approx(104.0)
        assert wait_for(lambda: abs(peer.ask("state")["tempo_bpm"] - 104.0) < 1e-3, 5.0)


def test_doctor_says_when_link_is_asked_for_and_whether_it_is_installed() -> None:
    assert link_finding("player", "off", installed=False).status == OK
    missing = link_finding("link", "both", installed=False)
    assert missing.status == WARN
    assert "antiphon[link]" in missing.fix
    assert "clock link and clock_out both" in missing.detail
    assert link_finding("midi", "link", installed=True).status == OK


def test_without_the_binding_the_session_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one stand-in here: an import that fails, as it does where the extra is missing
    (sys.modules holding None makes Python refuse the import)."""
    monkeypatch.setitem(__import__("sys").modules, "link", None)
    with pytest.raises(LinkUnavailable, match=r"antiphon\[link\]"):
        LinkSession()


def test_bridged_to_midi_clock_the_ticks_keep_the_peers_downbeat_and_its_new_tempo(
    session: LinkSession,
) -> None:
    leader = ClockLeader()
    leader.active = leader.midi = True
    leader.link = (session, QUANTUM)
    with link_peer(100.0) as peer:
        joined(peer, session, 100.0)
        first_s = leader.next_due_s(time.monotonic())
        assert first_s is not None
        assert session.beat_at(first_s + 1e-4, QUANTUM) % QUANTUM == pytest.approx(0, abs=0.01)
        assert leader.tick()[1] == (0xFA,)  # Start, on that downbeat
        peer.ask("tempo 133")
        assert wait_for(lambda: abs(session.tempo_bpm - 133.0) < 1e-3, FIND_TIMEOUT_S)
        dues = []
        for _ in range(10 * 24):  # ten beats ahead, ticked without waiting for them
            dues.append(leader.next_due_s(time.monotonic()))
            leader.tick()
        last = [b - a for a, b in itertools.pairwise(dues[-25:]) if a and b]
        assert all(interval == pytest.approx(60.0 / 133 / 24, abs=1e-5) for interval in last)
        assert leader.tempo_bpm == pytest.approx(133.0, abs=0.01)


def test_a_peers_change_of_tempo_mid_reply_is_kept_from_the_next_event(
    session: LinkSession,
) -> None:
    """The performer on a simulated clock set a few seconds ahead of the real one: Link's
    timeline is a function of time, so the reply is placed on it as it would be live; the
    peer changes the tempo while the reply plays, and the notes drawn after it keep the new
    tempo, on the session's beat."""
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.playing.performer import ManualClock, Performer
    from antiphon.daemon.settings import Settings

    from tests.test_pulse import MODEL

    sent: list[tuple[float, mido.Message]] = []
    with link_peer(100.0) as peer:
        joined(peer, session, 100.0)
        clock = ManualClock(time.monotonic() + 1.0)

        class Sink:
            def send(self, message: mido.Message) -> None:
                sent.append((clock.now_s, message))

        settings = Settings(
            model=str(MODEL),
            clock="link",
            groove=1.0,
            turns="gap",
            phrase_gap_s=0.35,
            reply_min_notes=24,
            reply_max_s=12.0,
        )
        performer = Performer(
            settings, Engine(MODEL, seed=2), Sink(), clock=clock, link=lambda: session
        )
        start_s = clock.now_s
        for k in range(8):  # eighths at 100 bpm
            onset_s = start_s + 0.3 * k
            performer.process_until(onset_s)
            performer.submit(mido.Message("note_on", note=60 + 2 * k, velocity=80), onset_s)
            performer.process_until(onset_s + 0.2)
            performer.submit(mido.Message("note_off", note=60 + 2 * k), onset_s + 0.2)
        performer.process_until(start_s + 2.4 + 0.35 + 1.5)  # the reply plays
        assert performer.replying
        peer.ask("tempo 133")
        assert wait_for(lambda: abs(session.tempo_bpm - 133.0) < 1e-3, FIND_TIMEOUT_S)
        changed_s = clock.now_s
        performer.process_until(changed_s + 12.0)
        performer.close()
    report = performer.reply_reports()[-1]
    assert report.beat_source == "link"
    assert report.beat_bpm == pytest.approx(133.0, abs=0.01)
    after = [t for t, m in sent if m.type == "note_on" and m.velocity > 0 and t > changed_s]
    assert len(after) >= 3
    # Each on a sixteenth or a triplet of the session's beat (groove 1).
    for onset_s in after[1:]:
        beat = session.beat_at(onset_s, QUANTUM)
        assert min(abs(beat * n - round(beat * n)) / n for n in (2, 3, 4)) < 1e-3


def test_a_peers_start_stop_sync_is_honoured_once_used(session: LinkSession) -> None:
    """Before any peer starts or stops, the beat is there; a peer's Stop (start/stop sync)
    takes it away until its Start."""
    with link_peer(100.0) as peer:
        joined(peer, session, 100.0)
        assert session.grid(time.monotonic(), QUANTUM) is not None
        peer.ask("playing 1")
        assert wait_for(lambda: session.grid(time.monotonic(), QUANTUM) is not None, 5.0)
        time.sleep(0.2)
        peer.ask("playing 0")
        assert wait_for(lambda: session.grid(time.monotonic(), QUANTUM) is None, 5.0)
        time.sleep(0.2)
        peer.ask("playing 1")
        assert wait_for(lambda: session.grid(time.monotonic(), QUANTUM) is not None, 5.0)


def test_bridged_to_midi_clock_the_peers_stop_and_start_are_passed_on(
    session: LinkSession,
) -> None:
    leader = ClockLeader()
    leader.active = leader.midi = True
    leader.link = (session, QUANTUM)
    with link_peer(100.0) as peer:
        joined(peer, session, 100.0)
        assert leader.next_due_s(time.monotonic()) is not None
        assert (0xFA,) in leader.tick()
        peer.ask("playing 1")
        time.sleep(0.2)
        peer.ask("playing 0")
        assert wait_for(lambda: session.transport() is False, 5.0)
        now_s = time.monotonic()
        assert leader.next_due_s(now_s) == now_s
        assert leader.tick() == [(0xFC,)]  # Stop
        assert leader.next_due_s(time.monotonic()) is None
        peer.ask("playing 1")
        assert wait_for(lambda: session.transport() is True, 5.0)
        due_s = leader.next_due_s(time.monotonic())
        assert due_s is not None
        assert session.beat_at(due_s + 1e-4, QUANTUM) % QUANTUM == pytest.approx(0, abs=0.01)
        assert leader.tick()[:2] == [(0xF2, 0, 0), (0xFA,)]  # Song Position 0, Start


def test_a_daws_midi_clock_bridged_to_link_stops_and_starts_the_peers(
    session: LinkSession,
) -> None:
    """``clock`` midi, ``clock_out`` link: the DAW's Stop and Start reach a Link peer as the
    session's transport (start/stop sync)."""
    from antiphon.daemon.musician.clocks.midi_clock import START, STOP, TICK, ClockFollower

    daw = ClockFollower()
    leader = ClockLeader(on_transport=session.set_playing)
    leader.active = True
    leader.passed_transport = daw
    tick_s = 0.6 / 24

    def play_a_beat(from_s: float) -> None:
        for k in range(25):
            daw.hear(TICK, from_s + k * tick_s)
        leader.offer(daw.grid(from_s + 24 * tick_s))
        leader.next_due_s(from_s + 24 * tick_s)

    with link_peer(100.0) as peer:
        joined(peer, session, 100.0)
        now_s = time.monotonic()
        daw.hear(START, now_s)
        play_a_beat(now_s)
        assert wait_for(lambda: peer.ask("state")["playing"] is True, 5.0)
        daw.hear(STOP, now_s + 0.7)
        assert leader.next_due_s(now_s + 0.7) is None  # halted (no MIDI out: no Stop due)
        assert wait_for(lambda: peer.ask("state")["playing"] is False, 5.0)
        daw.hear(START, now_s + 1.0)
        play_a_beat(now_s + 1.0)
        assert wait_for(lambda: peer.ask("state")["playing"] is True, 5.0)


def test_switched_to_link_live_the_performer_joins_the_session_then(session: LinkSession) -> None:
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.playing.performer import ManualClock, Performer
    from antiphon.daemon.settings import Settings

    from tests.test_pulse import MODEL

    class Sink:
        def send(self, message: mido.Message) -> None:
            pass

    joins: list[LinkSession] = []

    def join() -> LinkSession:
        joins.append(session)
        return session

    performer = Performer(
        Settings(model=str(MODEL)), Engine(MODEL), Sink(), clock=ManualClock(), link=join
    )
    assert performer.link is None and not joins  # not asked for: no session joined
    with link_peer(100.0) as peer:
        performer.set_parameter("clock_out", "link")
        performer.set_parameter("clock", "link")
        assert joins == [session]  # joined once
        assert peer.wait_for_peers(FIND_TIMEOUT_S)
        assert wait_for(lambda: performer.status()["link_peers"] >= 1, FIND_TIMEOUT_S)
    performer.close()
