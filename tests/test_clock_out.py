"""Antiphon as the tempo source: the outgoing clock's logic (ClockLeader), pure, on a simulated
clock; its thread and ports are tested in tests/test_link_jack.py."""

from __future__ import annotations

import itertools
import random
import statistics
import sys
import threading
import time

import mido
import pytest
from antiphon.daemon.midi.clock_sender import ClockSender
from antiphon.daemon.musician.clocks.clock_out import (
    CLOCK_START,
    CLOCK_STOP,
    CLOCK_TICK,
    FOLLOW_CONFIDENT,
    MAX_PHASE_STEP,
    MAX_TEMPO_STEP,
    SONG_POSITION_ZERO,
    TICKS_PER_BEAT,
    ClockLeader,
)
from antiphon.daemon.musician.hearing.beat import CONFIDENT, BeatGrid
from antiphon.daemon.settings import Settings
from hypothesis import given, settings
from hypothesis import strategies as st


def player(bpm: float, anchor_s: float = 0.0) -> BeatGrid:
    return BeatGrid(beat_s=60.0 / bpm, anchor_s=anchor_s, source="player")


class Run:
    """A leader driven tick by tick: every message with the time it was due."""

    def __init__(self, leader: ClockLeader, now_s: float = 0.0) -> None:
        self.leader = leader
        self.now_s = now_s
        self.sent: list[tuple[float, tuple[int, ...]]] = []

    def until(self, time_s: float, offer: BeatGrid | None = None) -> None:
        """Tick until ``time_s``, offering ``offer`` (when given) before each tick."""
        while True:
            if offer is not None:
                self.leader.offer(offer)
            due_s = self.leader.next_due_s(self.now_s)
            if due_s is None or due_s > time_s:
                self.now_s = time_s
                return
            self.now_s = max(self.now_s, due_s)
            self.sent.extend((due_s, data) for data in self.leader.tick())

    def beats(self) -> list[float]:
        """When each beat's tick went out (every 24th tick from Start)."""
        ticks = [t for t, data in self.sent if data == CLOCK_TICK]
        return ticks[::TICKS_PER_BEAT]


def running(follow: float = 0.5, midi: bool = True) -> ClockLeader:
    leader = ClockLeader(follow)
    leader.active, leader.midi = True, midi
    return leader


def test_nothing_goes_out_before_a_beat_is_offered_nor_while_switched_off() -> None:
    leader = running()
    assert leader.next_due_s(0.0) is None
    leader.active = False
    leader.offer(player(120))
    assert leader.next_due_s(0.0) is None


def test_the_clock_starts_on_the_players_next_beat_with_song_position_and_start() -> None:
    run = Run(running(), now_s=1.1)
    run.until(4.0, offer=player(120, anchor_s=0.25))
    assert [data for _, data in run.sent[:3]] == [SONG_POSITION_ZERO, CLOCK_START, CLOCK_TICK]
    assert run.sent[0][0] == pytest.approx(1.25)  # the player's next beat
    ticks = [t for t, data in run.sent if data == CLOCK_TICK]
    intervals = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(i == pytest.approx(0.5 / TICKS_PER_BEAT) for i in intervals)
    assert all(b - a == pytest.approx(0.5) for a, b in itertools.pairwise(run.beats()))


def test_a_tempo_change_is_followed_a_bounded_step_a_beat_and_reached() -> None:
    tempos: list[float] = []
    leader = ClockLeader(0.5, on_tempo=lambda bpm, at_s: tempos.append(bpm))
    leader.active = leader.midi = True
    run = Run(leader)
    run.until(4.0, offer=player(100))
    run.until(30.0, offer=player(110, anchor_s=4.0))
    assert tempos[0] == pytest.approx(100)
    steps = [abs(b / a - 1.0) for a, b in itertools.pairwise(tempos)]
    assert max(steps) <= MAX_TEMPO_STEP + 1e-9
    assert tempos[-1] == pytest.approx(110, rel=0.002)


def test_the_tempo_holds_when_no_beat_is_offered_and_at_follow_zero() -> None:
    leader = running(follow=0.5)
    run = Run(leader)
    run.until(2.0, offer=player(100))
    leader.offer(None)
    run.until(20.0)
    assert leader.tempo_bpm == pytest.approx(100)
    held = running(follow=0.0)
    run = Run(held)
    run.until(2.0, offer=player(100))
    run.until(20.0, offer=player(120))
    assert held.tempo_bpm == pytest.approx(100)


def tempos_beat_by_beat(leader: ClockLeader, readings_bpm: list[float]) -> list[float]:
    """Each reading offered for one outgoing beat: the outgoing tempo after each."""
    now_s, tempos = 0.0, []
    for bpm in readings_bpm:
        leader.offer(player(bpm))
        for _ in range(TICKS_PER_BEAT):
            due_s = leader.next_due_s(now_s)
            assert due_s is not None
            now_s = due_s
            leader.tick()
        assert leader.tempo_bpm is not None
        tempos.append(leader.tempo_bpm)
    return tempos


@pytest.mark.parametrize("off", [-0.05, 0.03, 0.05, 0.07])
def test_one_reading_that_leaps_moves_the_tempo_one_bounded_step(
    off: float,
) -> None:
    """A reading a few per cent off for one beat (a wobble of the player's, or a misheard
    beat) moves the tempo one bounded step, and it is back within a few beats, with no
    trend carried on; held, it is followed."""
    readings = [100.0] * 12 + [100.0 * (1 + off)] + [100.0] * 12
    for follow in (0.5, 1.0):
        tempos = tempos_beat_by_beat(running(follow=follow), readings)
        assert tempos[:12] == [pytest.approx(100.0)] * 12
        assert max(abs(t / 100.0 - 1.0) for t in tempos) <= MAX_TEMPO_STEP + 1e-9
        assert all(abs(t / 100.0 - 1.0) <= 0.005 for t in tempos[16:])
        assert tempos[-1] == pytest.approx(100.0, rel=0.001)
    held = [100.0] * 12 + [100.0 * (1 + off)] * 12
    tempos = tempos_beat_by_beat(running(follow=1.0), held)
    assert tempos[-1] == pytest.approx(100.0 * (1 + off), rel=0.002)


def unsure(bpm: float, confidence: float) -> BeatGrid:
    return BeatGrid(beat_s=60.0 / bpm, anchor_s=0.0, source="player", confidence=confidence)


def test_the_clock_starts_on_a_sure_beat_and_follows_an_unsure_one_while_there_is_one() -> None:
    leader = running(follow=1.0)
    run = Run(leader)
    run.until(4.0, offer=unsure(100, CONFIDENT - 0.01))
    assert leader.tempo_bpm is None and run.sent == []  # an unsure beat starts nothing
    run.until(6.0, offer=unsure(100, CONFIDENT))
    assert leader.tempo_bpm == pytest.approx(100)
    # Unsure but heard: followed (real players seldom give a sure beat).
    run.until(20.0, offer=unsure(104, FOLLOW_CONFIDENT))
    assert leader.tempo_bpm == pytest.approx(104, rel=0.002)
    # Heard no more: the tempo holds.
    run.until(40.0, offer=unsure(96, FOLLOW_CONFIDENT - 0.01))
    assert leader.tempo_bpm == pytest.approx(104, rel=0.002)


@pytest.mark.parametrize("level", [2.0, 0.5, 3.0, 1.5, 2.0 / 3.0])
def test_an_unsure_reading_at_another_metrical_level_is_heard_at_the_clocks(level: float) -> None:
    """Eighths taken for beats, triplets for eighths: an unsure reading at another level of
    the tempo is that tempo, followed as it moves; a sure one is a new tempo once it holds."""
    leader = running(follow=1.0)
    run = Run(leader)
    run.until(3.0, offer=player(80))
    run.until(30.0, offer=unsure(82 * level, 0.3))
    assert leader.tempo_bpm == pytest.approx(82, rel=0.002)
    run.until(150.0, offer=unsure(82 * level, CONFIDENT))
    assert leader.tempo_bpm == pytest.approx(82 * level, rel=0.002)


def test_a_clock_passed_on_is_followed_beat_for_beat() -> None:
    leader = running(follow=0.1)
    run = Run(leader)
    link = BeatGrid(beat_s=60.0 / 133, anchor_s=0.013, source="link")
    run.until(10.0, offer=link)
    assert leader.tempo_bpm == pytest.approx(133)
    for beat_s in run.beats()[1:]:
        on_grid = (beat_s - link.anchor_s) / link.beat_s
        assert on_grid == pytest.approx(round(on_grid), abs=1e-6)


def test_switched_off_it_sends_stop_and_on_again_it_starts_on_a_beat() -> None:
    leader = running()
    run = Run(leader)
    run.until(2.0, offer=player(120))
    leader.midi = False
    run.until(3.0)
    stops = [t for t, data in run.sent if data == CLOCK_STOP]
    assert len(stops) == 1
    assert not [t for t, data in run.sent if data == CLOCK_TICK and t > stops[0]]
    leader.midi = True
    run.until(5.0)
    starts = [t for t, data in run.sent if data == CLOCK_START]
    assert len(starts) == 2
    assert (starts[1] - starts[0]) / 0.5 == pytest.approx(round((starts[1] - starts[0]) / 0.5))
    assert leader.stop() == [CLOCK_STOP]
    assert leader.stop() == []


def test_link_out_hears_each_change_of_tempo_on_the_beat() -> None:
    heard: list[tuple[float, float]] = []
    leader = ClockLeader(0.5, on_tempo=lambda bpm, at_s: heard.append((bpm, at_s)))
    leader.active = True  # Link only: no MIDI goes out
    run = Run(leader)
    run.until(3.0, offer=player(100))
    run.until(12.0, offer=player(104, anchor_s=3.0))
    assert not run.sent
    assert heard[0][0] == pytest.approx(100)
    assert heard[-1][0] == pytest.approx(leader.tempo_bpm)
    times = [at_s for _, at_s in heard]
    assert times == sorted(times)
    assert all(100.0 <= bpm <= 104.0 + 1e-9 for bpm, _ in heard)


@settings(max_examples=60, deadline=None)
@given(
    tempos=st.lists(st.floats(40.0, 240.0), min_size=4, max_size=40),
    follow=st.floats(0.0, 1.0),
    phases=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=40),
)
def test_between_beats_the_outgoing_beat_never_changes_more_than_the_bounds(
    tempos: list[float], follow: float, phases: list[float]
) -> None:
    """Whatever the player's beat does (tempo and phase jumping at random), one beat is never
    longer or shorter than the one before by more than the tempo step and the phase pull."""
    leader = running(follow)
    run = Run(leader)
    time_s = 0.0
    for tempo, phase in zip(tempos, phases, strict=False):
        time_s += 1.0
        run.until(time_s, offer=player(tempo, anchor_s=phase))
    beats = run.beats()
    bound = (1 + MAX_PHASE_STEP) / (1 - MAX_PHASE_STEP) / (1 - MAX_TEMPO_STEP) - 1
    # issue 22: no step larger than 2 % between beats at the listener, the delivery's jitter
    # (up to 0.6 % at 100 bpm) included
    assert bound <= 0.015
    for a, b, c in zip(beats, beats[1:], beats[2:], strict=False):
        assert abs((c - b) / (b - a) - 1.0) <= bound + 1e-9


def sent_bytes(sent: list[tuple[float, mido.Message]]) -> list[tuple[float, list[int]]]:
    return [(t, m.bytes()) for t, m in sent]


@pytest.mark.parametrize("seed", [0, 1])
def test_at_their_off_values_the_new_knobs_leave_the_performance_bit_for_bit(seed: int) -> None:
    """``clock_out`` off (its follow rate and ``link_quantum`` moved) and ``clock`` link with no
    Link session (as when rendering offline): every message as with the player's beat and
    no clock out, both computed here."""
    from tests.test_pulse import CALL, perform

    performer, base = perform(CALL, seed, clock="player")
    assert base
    assert performer.clock_leader.next_due_s(0.0) is None  # nothing offered at clock_out off
    _, moved = perform(
        CALL, seed, clock="player", clock_out="off", clock_out_follow=0.9, link_quantum=3
    )
    assert sent_bytes(moved) == sent_bytes(base)
    _, without_link = perform(CALL, seed, clock="link")
    assert sent_bytes(without_link) == sent_bytes(base)


def test_with_clock_out_on_the_performer_offers_the_players_beat() -> None:
    from tests.test_pulse import CALL, perform

    performer, _ = perform(CALL, 0, clock_out="midi", clock_out_follow=0.7)
    leader = performer.clock_leader
    assert leader.active and leader.midi and leader.follow == 0.7
    assert leader.next_due_s(10.0) is not None
    assert leader.tempo_bpm == pytest.approx(120, rel=0.03)  # the call: eighths at 120 bpm


class SteppedTimeline:
    """A beat timeline like Link's (a pure stand-in for the logic; the real session is in
    tests/test_link.py): ``bpm`` until ``change_s``, then ``new_bpm``, beats continuous."""

    def __init__(self, bpm: float, change_s: float, new_bpm: float) -> None:
        self.bpm, self.change_s, self.new_bpm = bpm, change_s, new_bpm
        self.beat_at_change = change_s * bpm / 60.0
        self.playing: bool | None = None  # no peer uses start/stop

    def transport(self) -> bool | None:
        return self.playing

    def beat_at(self, time_s: float, quantum: int) -> float:
        if time_s <= self.change_s:
            return time_s * self.bpm / 60.0
        return self.beat_at_change + (time_s - self.change_s) * self.new_bpm / 60.0

    def time_at(self, beat: float, quantum: int) -> float:
        if beat <= self.beat_at_change:
            return beat * 60.0 / self.bpm
        return self.change_s + (beat - self.beat_at_change) * 60.0 / self.new_bpm


def test_following_link_each_tick_is_on_its_timeline_from_a_downbeat() -> None:
    timeline = SteppedTimeline(100.0, change_s=10.1, new_bpm=133.0)
    leader = running(follow=0.0)  # the follow rate is for the player's beat, not Link's
    leader.link = (timeline, 4)
    run = Run(leader, now_s=0.7)
    run.until(20.0)
    ticks = [t for t, data in run.sent if data == CLOCK_TICK]
    assert timeline.beat_at(ticks[0], 4) == pytest.approx(4.0)  # the next downbeat
    for k, tick_s in enumerate(ticks):
        assert timeline.beat_at(tick_s, 4) == pytest.approx(4.0 + k / TICKS_PER_BEAT)
    assert leader.tempo_bpm == pytest.approx(133.0)
    # Link goes (clock no longer link): the clock goes on at Link's last tempo.
    leader.link = None
    run.until(30.0)
    beats = run.beats()
    assert beats[-1] - beats[-2] == pytest.approx(60.0 / 133.0)


def test_without_the_link_binding_the_daemon_plays_on_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the link extra is not installed (Python refuses the import here as it would
    there): clock link and clock_out link are taken, the player's beat leads, one warning."""
    from antiphon.daemon.musician.clocks.link_clock import LinkSession
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.playing.performer import ManualClock, Performer
    from antiphon.daemon.settings import Settings

    from tests.test_pulse import MODEL

    monkeypatch.setitem(sys.modules, "link", None)
    sent: list[mido.Message] = []

    class Sink:
        def send(self, message: mido.Message) -> None:
            sent.append(message)

    settings = Settings(model=str(MODEL), clock="link", clock_out="both")
    performer = Performer(settings, Engine(MODEL), Sink(), clock=ManualClock(), link=LinkSession)
    assert performer.link is None
    assert caplog.text.count("antiphon[link]") == 1
    performer.set_parameter("clock", "link")
    assert caplog.text.count("antiphon[link]") == 1
    assert performer.status()["link_peers"] == 0
    performer.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_player_speeding_up_is_led_not_trailed(seed: int) -> None:
    """Eighths (8 ms of timing jitter) from 100 bpm to 10 % faster over 8 bars, heard by the
    beat keeper (tracker and follower) and led by the outgoing clock at the default follow
    rate (simulated time): over the ramp the outgoing tempo is, at the median, within two of
    the player's beats of the player's tempo (the tracker alone reads 3 to 4 beats behind),
    and never changes more than the step allowed."""
    from antiphon.daemon.musician.clocks.beat_keeper import BeatKeeper
    from antiphon.daemon.tools.bench_link import (
        ACCEL_BEATS,
        LEAD_IN_BEATS,
        _accelerating_beats,
        _ramp_lag_beats,
    )

    beats = _accelerating_beats()
    rng = random.Random(seed)
    onsets = [
        t + rng.gauss(0.0, 0.008) for a, b in itertools.pairwise(beats) for t in (a, (a + b) / 2)
    ]
    tempos: list[tuple[float, float]] = []
    leader = ClockLeader(Settings().clock_out_follow, on_tempo=lambda b, t: tempos.append((t, b)))
    leader.active = True
    keeper = BeatKeeper()
    now_s, k = 0.0, 0
    while k < len(onsets):
        due_s = leader.next_due_s(now_s)
        if due_s is None or onsets[k] < due_s:
            keeper.hear_player(onsets[k])
            now_s = onsets[k]
            k += 1
            leader.offer(keeper.lead_grid(now_s, "player"))
        else:
            now_s = due_s
            leader.tick()
    lag = _ramp_lag_beats(beats)
    ramp = (beats[LEAD_IN_BEATS + 4], beats[LEAD_IN_BEATS + ACCEL_BEATS])
    lags = [lag(t, bpm) for t, bpm in tempos if ramp[0] <= t <= ramp[1]]
    assert len(lags) > 20
    assert abs(statistics.median(lags)) <= 2.0
    steps = [abs(b / a - 1.0) for (_, a), (_, b) in itertools.pairwise(tempos)]
    assert max(steps) <= MAX_TEMPO_STEP + 1e-9


def test_the_benchs_lag_counts_a_clock_ahead_of_the_player_as_one_behind() -> None:
    """A clock 3 beats ahead of the player half the time is not "within 2 beats" (a signed
    90th percentile said 0.5: a clock that ran ahead passed for one that followed)."""
    from antiphon.daemon.tools.bench_link import _lag_summary

    summary = _lag_summary([-3.0] * 5 + [0.5] * 5)
    assert summary is not None
    assert summary["p90_abs"] == pytest.approx(3.0)
    assert summary["median"] == pytest.approx(-1.25) and summary["max"] == 0.5
    assert _lag_summary([]) is None


def test_following_link_the_peers_stop_and_start_are_passed_on() -> None:
    timeline = SteppedTimeline(120.0, change_s=100.0, new_bpm=120.0)
    leader = running()
    leader.link = (timeline, 4)
    run = Run(leader, now_s=0.1)
    run.until(3.0)
    timeline.playing = False  # the peers stop
    run.until(5.0)
    stops = [t for t, data in run.sent if data == CLOCK_STOP]
    assert len(stops) == 1 and stops[0] <= 3.0 + 0.5 / TICKS_PER_BEAT
    assert not [t for t, data in run.sent if t > stops[0] and data == CLOCK_TICK]
    timeline.playing = True
    run.until(9.0)
    starts = [t for t, data in run.sent if data == CLOCK_START]
    assert len(starts) == 2
    assert timeline.beat_at(starts[1], 4) % 4 == pytest.approx(0.0)  # on a downbeat
    assert starts[1] >= 5.0


def test_a_daws_stop_and_start_are_passed_on_when_its_clock_is_bridged() -> None:
    """``clock`` midi bridged to the outgoing clock: the DAW's Stop goes out as Stop (the
    player's beat, offered meanwhile, does not keep it going), and once the DAW starts
    again the clock waits for its beat and starts (Song Position 0, Start) on it."""
    from antiphon.daemon.musician.clocks.midi_clock import START, STOP, TICK, ClockFollower

    tick_s = 0.5 / TICKS_PER_BEAT  # the DAW at 120 bpm
    daw = ClockFollower()
    told: list[tuple[bool, float]] = []
    leader = running()
    leader.on_transport = lambda playing, at_s: told.append((playing, at_s))
    leader.passed_transport = daw
    restart_s = 3.013
    daw.hear(START, 0.0)
    playing = [(k * tick_s, TICK) for k in range(int(2.0 / tick_s))]
    playing += [(2.0, STOP), (restart_s, START)]
    playing += [(restart_s + k * tick_s, TICK) for k in range(int(3.0 / tick_s))]
    sent: list[tuple[float, tuple[int, ...]]] = []
    now_s = 0.0
    for time_s, code in playing:
        while True:
            leader.offer(daw.grid(now_s) or player(100, anchor_s=0.1))
            due_s = leader.next_due_s(now_s)
            if due_s is None or due_s > time_s:
                break
            now_s = max(now_s, due_s)
            sent.extend((due_s, data) for data in leader.tick())
        daw.hear(code, time_s)
        now_s = time_s
    assert daw.transport(now_s) is True
    assert daw.transport(now_s + 3.0) is None  # no Stop, no tick: a DAW closed, say
    starts = [t for t, data in sent if data == CLOCK_START]
    stops = [t for t, data in sent if data == CLOCK_STOP]
    assert len(starts) == 2 and len(stops) == 1
    assert 2.0 <= stops[0] < restart_s
    assert not [t for t, data in sent if data == CLOCK_TICK and stops[0] < t < starts[1]]
    for start_s, daw_start_s in zip(starts, (0.0, restart_s), strict=True):
        beats = (start_s - daw_start_s) / 0.5
        assert beats == pytest.approx(round(beats), abs=1e-6), (starts, stops)  # on its beat
    assert starts[1] > restart_s
    assert told == [(True, starts[0]), (False, told[1][1]), (True, starts[1])]  # Link out
    assert stops[0] - 0.5 / TICKS_PER_BEAT <= told[1][1] <= stops[0]
    for beat_s in [t for t, data in sent if data == CLOCK_TICK and t >= starts[1]][::24]:
        beats = (beat_s - restart_s) / 0.5
        assert beats == pytest.approx(round(beats), abs=1e-6)


def test_a_clock_without_start_or_stop_never_halts_the_outgoing_one() -> None:
    """A DAW's clock that only ticks (no transport): nothing is held back, as before."""
    from antiphon.daemon.musician.clocks.midi_clock import ClockFollower

    daw = ClockFollower()
    assert daw.transport(0.0) is None
    told: list[tuple[bool, float]] = []
    leader = running()
    leader.on_transport = lambda playing, at_s: told.append((playing, at_s))
    leader.passed_transport = daw
    run = Run(leader)
    run.until(3.0, offer=player(100))
    assert not told
    assert [data for _, data in run.sent[:2]] == [SONG_POSITION_ZERO, CLOCK_START]
    assert not [t for t, data in run.sent if data == CLOCK_STOP]


class OneTick:
    """A schedule with one tick, ``due_in_s`` from when it is made (the sender's thread asks
    it as the daemon's ClockLeader is asked; a stand-in for the leader's timing alone)."""

    def __init__(self, due_in_s: float) -> None:
        self.due_s: float | None = time.monotonic() + due_in_s

    def next_due_s(self, now_s: float) -> float | None:
        return self.due_s

    def tick(self) -> list[list[int]]:
        self.due_s = None
        return [[CLOCK_TICK]]

    def stop(self) -> list[list[int]]:
        return []


class Sent:
    def __init__(self) -> None:
        self.times_s: list[float] = []
        self.arrived = threading.Event()

    def send_raw(self, data: list[int]) -> None:
        self.times_s.append(time.monotonic())
        self.arrived.set()


def test_the_clock_thread_sends_each_tick_output_ahead_before_its_time() -> None:
    schedule, sent = OneTick(due_in_s=30.0), Sent()
    sender = ClockSender(schedule, sent, ahead_s=29.9)
    sender.start()
    try:
        assert sent.arrived.wait(10.0), "the tick waited for its time, not 29.9 s before it"
    finally:
        sender.stop()
    assert schedule.due_s is None and len(sent.times_s) == 1
