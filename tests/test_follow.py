"""Following the call, steering and the player's memory: off is the old reply bit for bit,
a range is never left, and each push moves the choice the way its name says."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
from antiphon.daemon.codec import CodecConfig, Vocabulary
from antiphon.daemon.musician.answering import speculation
from antiphon.daemon.musician.answering.follow import (
    CONTOUR_SHARE_MAX,
    NO_GROUP,
    ContourBias,
    FollowBias,
    HeardCall,
    Steering,
    after_note_on,
    pitch_range_mask,
)
from antiphon.daemon.musician.answering.shaping import ReplyShaping, ShapingState
from antiphon.daemon.musician.hearing.phrase_shape import shape_of
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.respond import TimedMessage, read_call, respond
from antiphon.daemon.settings import Settings
from antiphon.training.eval_replies import messages_to_notes
from hypothesis import given, settings
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parent / "data"
MODEL = Path(__file__).resolve().parent.parent / "exported_models" / "antiphon-piano.onnx"
VOCABULARY = Vocabulary(CodecConfig())


def line_call(pitches: list[int], ioi: float, chord: int = 1) -> list[TimedMessage]:
    """Each pitch (with ``chord - 1`` notes a third below) every ``ioi`` seconds."""
    out = []
    for i, p in enumerate(pitches):
        for k in range(chord):
            out.append((i * ioi, mido.Message("note_on", note=p - 4 * k, velocity=70)))
            out.append((i * ioi + 0.8 * ioi, mido.Message("note_off", note=p - 4 * k)))
    out.sort(key=lambda x: (x[0], x[1].type == "note_on"))
    return out


CALLS = {
    "call.mid": read_call(DATA / "call.mid"),
    "line": line_call([60, 62, 64, 67, 65, 64, 62, 60], 0.3),
    "chords": line_call([72, 74, 76, 79], 0.5, chord=3),
}


def answer(call: list[TimedMessage], seed: int, **knobs: object) -> list[TimedMessage]:
    # The replies of before were made after the fixed gap of before.
    values = {
        "seed": seed, "echo_window_ms": 0.0, "model": str(MODEL),
        "turns": "gap", "phrase_gap_s": 0.35, **knobs,
    }  # fmt: skip
    current = Settings(**values)  # type: ignore[arg-type]
    engine = Engine(current.model, seed=seed, noise=current.noise)
    return respond(call, current, engine)


def flat(reply: list[TimedMessage]) -> list[list[object]]:
    return [[round(t, 9), m.type, m.note, m.velocity] for t, m in reply]


# The cases the knob-off guarantees are checked on: three calls (one played by hand with the
# pedal, a single line, chords), three seeds, without and with noise.
KNOB_OFF_CASES = [
    (call, seed, noise) for call in sorted(CALLS) for seed in (1, 2, 3) for noise in (0.0, 0.3)
]


class DrawRecorder(Engine):
    """The real engine, noting the pushes each draw was given."""

    pushes: list[tuple[bool, bool]]

    def sample(self, *args: Any, **kwargs: Any) -> int:
        self.pushes.append((kwargs.get("bias") is not None, kwargs.get("blend") is not None))
        return super().sample(*args, **kwargs)


def plain_draw(call: list[TimedMessage], seed: int, **knobs: object) -> list[TimedMessage]:
    """The reply with no shaping at all, as before following existed: the speculator is made
    to give every reply no :class:`ReplyShaping`, whatever the knobs say."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(speculation, "make_shaping", lambda *args, **kwargs: None)
        return answer(call, seed, **knobs)


@pytest.mark.parametrize(("call", "seed", "noise"), KNOB_OFF_CASES)
def test_follow_0_and_mirror_0_play_the_plain_draw_bit_for_bit(
    call: str, seed: int, noise: float
) -> None:
    """Both replies are computed here, on this machine: a reference recorded elsewhere could
    differ in a sampled token (onnxruntime's kernels differ between processors)."""
    knobs = {"noise": noise, "follow": 0.0, "mirror": 0.0, "clock": "off"}
    reply = answer(CALLS[call], seed, **knobs)
    assert len(reply) > 0
    assert flat(reply) == flat(plain_draw(CALLS[call], seed, **knobs))


def test_with_every_push_off_no_draw_is_given_a_bias_or_a_blend() -> None:
    current = Settings(seed=1, model=str(MODEL), echo_window_ms=0.0, follow=0.0, mirror=0.0)
    engine = DrawRecorder(current.model, seed=1)
    engine.pushes = []
    respond(CALLS["line"], current, engine)
    assert len(engine.pushes) > 10
    assert set(engine.pushes) == {(False, False)}
    pushed = Settings(seed=1, model=str(MODEL), echo_window_ms=0.0, follow=1.0, mirror=1.0)
    engine = DrawRecorder(pushed.model, seed=1)
    engine.pushes = []
    respond(CALLS["line"], pushed, engine)
    assert (True, True) in set(engine.pushes)  # the recorder sees pushes where there are


def test_following_changes_the_reply() -> None:
    plain = answer(CALLS["line"], 1, follow=0.0)
    followed = answer(CALLS["line"], 1, follow=1.0)
    assert flat(plain) != flat(followed)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    low=st.integers(30, 80),
    width=st.integers(0, 24),
    follow=st.sampled_from([0.0, 0.5, 1.0]),
    mirror=st.sampled_from([0.0, 1.0]),
    call=st.sampled_from(sorted(CALLS)),
)
def test_every_reply_note_lies_inside_the_range(
    seed: int, low: int, width: int, follow: float, mirror: float, call: str
) -> None:
    high = low + width
    reply = answer(CALLS[call], seed, follow=follow, mirror=mirror, range_low=low, range_high=high)
    notes, hanging = messages_to_notes(reply)
    assert hanging == 0
    assert len(notes) > 0
    assert all(low <= p <= high for p in notes[:, 0])


def test_dynamics_shifts_every_reply_note_by_that_many_levels() -> None:
    plain = answer(CALLS["line"], 2, follow=0.0, range_low=0, range_high=127)
    louder = answer(CALLS["line"], 2, follow=0.0, dynamics=20)
    ons = [(m.note, m.velocity) for _, m in plain if m.type == "note_on" and m.velocity]
    loud = [(m.note, m.velocity) for _, m in louder if m.type == "note_on" and m.velocity]
    assert [n for n, _ in ons] == [n for n, _ in loud]  # the same notes, the model heard its own
    assert [min(127, v + 20) for _, v in ons] == [v for _, v in loud]


def fake_call(pitches: list[int], ioi: float, chord: int = 1) -> np.ndarray:
    rows = []
    for i, p in enumerate(pitches):
        for k in range(chord):
            rows.append((p - 4 * k, i * ioi, (i + 0.8) * ioi, 70))
    return np.asarray(rows, np.float64)


def test_register_bias_pushes_down_pitches_far_from_the_call() -> None:
    bias = FollowBias(fake_call([60, 62, 64, 65], 0.3), Steering(follow=1.0), VOCABULARY)
    row = bias.bias(NO_GROUP, 0.0)
    assert row[62] > row[74] > row[86]
    assert row[62] == pytest.approx(0.0, abs=0.1)


def test_a_single_line_call_pushes_down_a_second_note_in_the_same_onset_group() -> None:
    bias = FollowBias(fake_call([60, 62, 64, 65], 0.3), Steering(follow=1.0), VOCABULARY)
    group = after_note_on(NO_GROUP, 1.0)
    assert bias.bias(group, 1.0)[62] < -0.5
    chords = FollowBias(fake_call([72, 74, 76, 79], 0.5, chord=3), Steering(follow=1.0), VOCABULARY)
    assert chords.bias(group, 1.0)[72] > 0.5  # a chordal call wants the group filled


def test_pace_bias_waits_for_the_call_s_interval_and_density_scales_it() -> None:
    call = fake_call([60, 62, 64, 65], 0.4)
    bias = FollowBias(call, Steering(follow=1.0), VOCABULARY)
    group = after_note_on(NO_GROUP, 0.0)
    on = VOCABULARY.note_on(62)
    early, due, late = (bias.bias(group, t)[on] for t in (0.1, 0.4, 1.6))
    assert early < due < late
    denser = FollowBias(call, Steering(follow=1.0, density=2.0), VOCABULARY)
    assert denser.pace.target_s == pytest.approx(bias.pace.target_s / 2)
    # The time shift pushed least is the one that lands on the interval.
    shifts = bias.bias(group, 0.1)[VOCABULARY.time_shift_base : VOCABULARY.velocity_base]
    best = VOCABULARY.time_shifts_s[int(np.argmax(shifts))]
    assert best == pytest.approx(0.3, rel=0.05)
    assert shifts[-1] < -1.0


def test_follow_0_has_no_bias_at_all() -> None:
    bias = FollowBias(fake_call([60, 62, 64, 65], 0.3), Steering(follow=0.0), VOCABULARY)
    for group, now_s in (
        (NO_GROUP, 0.0),
        (after_note_on(NO_GROUP, 0.0), 0.01),
        ((0.0, 1, 1, 0.0), 2.0),
    ):
        assert not np.any(bias.bias(group, now_s))


@given(low=st.integers(0, 127), high=st.integers(0, 127))
def test_the_range_mask_allows_exactly_the_range(low: int, high: int) -> None:
    mask = pitch_range_mask(low, high)
    assert [p for p in range(128) if mask[p]] == list(range(low, high + 1))


def test_the_heard_call_keeps_the_call_s_notes_bounded() -> None:
    heard = HeardCall(capacity=4)
    for i in range(6):
        heard.note_on(60 + i, 70, float(i))
        heard.note_off(60 + i, i + 0.5)
    heard.note_on(80, 90, 6.0)
    notes = heard.notes(6.2)
    assert notes[:, 0].tolist() == [63, 64, 65, 80]
    assert notes[-1, 2] == pytest.approx(6.2)  # still sounding: ends now
    shape = shape_of(notes)
    assert shape is not None and shape.notes == 4


def test_the_heard_call_runs_from_the_last_second_of_silence() -> None:
    heard = HeardCall()
    for i, start_s in enumerate((0.0, 0.5, 1.4, 3.0)):  # gaps 0.3 s, 0.7 s, then 1.4 s
        heard.note_on(60 + i, 70, start_s)
        heard.note_off(60 + i, start_s + 0.2)
    assert heard.notes(4.0)[:, 0].tolist() == [63]
    heard.note_on(70, 70, 3.5)  # 0.3 s after: the same call
    assert heard.notes(4.0)[:, 0].tolist() == [63, 70]


def test_the_articulation_push_holds_a_line_s_note_to_the_call_s_length_then_starts_next() -> None:
    call = fake_call([60, 62, 64, 65], 0.3)  # notes 0.8 of the interval: articulation 0.8
    bias = FollowBias(call, Steering(follow=1.0, articulation_weight=16.0), VOCABULARY)
    assert bias.articulation is not None
    assert bias.articulation.length_s == pytest.approx(0.24)
    group = after_note_on(NO_GROUP, 0.0)
    off = VOCABULARY.note_off(60)
    # Sounding (released before its onset): its release waits for the call's length.
    early, late = (bias.bias(group, t, -math.inf)[off] for t in (0.05, 0.5))
    assert early < 0 < late
    shifts = bias.bias(group, 0.05, -math.inf)[
        VOCABULARY.time_shift_base : VOCABULARY.velocity_base
    ]
    best = VOCABULARY.time_shifts_s[int(np.argmax(shifts))]
    assert best == pytest.approx(0.19, rel=0.05)
    # Released after 0.1 s: the next onset is due 0.1 / 0.8 s after the first, sooner than
    # the pace alone would start it; the note-offs are no longer pushed.
    on = VOCABULARY.note_on(62)
    released = bias.bias(group, 0.15, 0.1).copy()  # (the bias array is reused)
    assert released[off] == 0.0
    assert released[on] > bias.bias(group, 0.15, None)[on]
    assert bias.bias(group, 0.11, 0.1)[on] < released[on]


@settings(max_examples=30, deadline=None)
@given(
    now_s=st.floats(0.0, 3.0),
    onset_s=st.floats(0.0, 1.0),
    released_after_s=st.one_of(st.none(), st.floats(-1.0, 1.0)),
    groups=st.integers(1, 12),
)
def test_without_an_articulation_weight_a_release_changes_no_bias(
    now_s: float, onset_s: float, released_after_s: float | None, groups: int
) -> None:
    bias = FollowBias(fake_call([60, 62, 64, 65], 0.3), Steering(follow=1.0), VOCABULARY)
    assert bias.articulation is None
    group = (onset_s, 1, groups, 0.0)
    released_s = None if released_after_s is None else onset_s + released_after_s
    before = bias.bias(group, now_s, None).copy()
    assert np.array_equal(bias.bias(group, now_s, released_s), before)


def shaping_as_before(self: ReplyShaping, state: ShapingState, now_s: float) -> Any:
    """The shaping's bias as it was before the articulation push: no release passed on."""
    return None if self.follow is None else self.follow.bias(state.group, now_s)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_model_without_an_articulation_weight_answers_one_line_bit_for_bit_as_before(
    seed: int,
) -> None:
    """Both replies computed here, on this machine; the piano model's file asks for no push."""
    reply = answer(CALLS["line"], seed, follow=1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ReplyShaping, "bias", shaping_as_before)
        before = answer(CALLS["line"], seed, follow=1.0)
    assert len(reply) > 0
    assert flat(reply) == flat(before)
    with pytest.MonkeyPatch.context() as patch:  # the test can fail: a weight changes it
        patch.setattr(speculation, "model_articulation_weight", lambda training: 16.0)
        pushed = answer(CALLS["line"], seed, follow=1.0)
    assert flat(pushed) != flat(reply)
    _, hanging = messages_to_notes(pushed)
    assert hanging == 0


def test_the_contour_push_turns_a_line_as_often_as_the_call_does() -> None:
    runs = fake_call([60, 62, 64, 65, 67, 69, 71, 72], 0.3)  # never turns: pushed down
    zigzag = fake_call([60, 64, 61, 65, 62, 66, 63, 67], 0.3)  # always turns: pushed up
    group = after_note_on(NO_GROUP, 0.0)
    for call, sign in ((runs, -1), (zigzag, 1)):
        bias = FollowBias(call, Steering(follow=1.0, contour_weight=1.0), VOCABULARY)
        assert bias.contour is not None
        plain = bias.bias(group, 0.5, -math.inf).copy()  # no move yet: no push
        rising = bias.bias(group, 0.5, -math.inf, (64, 1, 1, 0)).copy()
        down, up = VOCABULARY.note_on(62), VOCABULARY.note_on(66)
        assert np.sign(rising[down] - plain[down]) == sign  # turning after a rise
        assert rising[up] == plain[up] and rising[VOCABULARY.note_on(64)] == plain[64]
        falling = bias.bias(group, 0.5, -math.inf, (64, -1, 1, 0))
        assert np.sign(falling[up] - plain[up]) == sign
        chords = bias.bias(group, 0.5, None, (64, 1, 1, 0))  # not answering one line: no push
        assert np.array_equal(chords, plain)


def test_a_reply_to_a_call_that_never_turns_may_still_turn_once_it_has_run_on() -> None:
    # Kept to a share of exactly 0, the line could only run on or repeat its note.
    fixed, corrected = np.zeros(128), np.zeros(128)
    line = (64, 1, 10, 0)  # ten moves, all up
    ContourBias(0.0, 1.0, 1.0, 0.0).add(fixed, line)
    ContourBias(0.0, 1.0, 1.0, 8.0).add(corrected, line)
    assert corrected[60] > fixed[60]


@given(
    share=st.floats(0.0, 1.0),
    moves=st.integers(1, 40),
    turned=st.floats(0.0, 1.0),
    gain=st.floats(0.1, 4.0),
)
def test_the_contour_correction_turns_a_line_toward_the_calls_share(
    share: float, moves: int, turned: float, gain: float
) -> None:
    turns = round(turned * (moves - 1))
    line = (64, 1, moves, turns)  # it rose last: pitches below turn
    target = min(CONTOUR_SHARE_MAX, max(1 - CONTOUR_SHARE_MAX, share))  # never 0 or 1
    fixed, corrected = np.zeros(128), np.zeros(128)
    ContourBias(share, 1.0, 1.0, 0.0).add(fixed, line)
    ContourBias(share, 1.0, 1.0, gain).add(corrected, line)
    assert np.all(fixed[64:] == 0.0) and np.all(corrected[64:] == 0.0)
    correction = corrected[0] - fixed[0]
    # Turning brings the line's share nearer the call's: pushed up; farther: down.
    after_turning, after_not = abs(turns + 1 - target * moves), abs(turns - target * moves)
    if after_turning < after_not - 1e-6:
        assert correction > 0
    elif after_turning > after_not + 1e-6:
        assert correction < 0
    # At gain 0 the counts change nothing.
    other = np.zeros(128)
    ContourBias(share, 1.0, 1.0, 0.0).add(other, (64, 1, 1, 0))
    assert np.array_equal(other, fixed)
